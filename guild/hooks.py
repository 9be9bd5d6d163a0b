"""The guild's hooks into the arena daemon: evals during training, the champion, and idle quests.

`realm arena` calls `arena_hooks(realm)` once at start. The daemon owns the loop; the guild only
answers three calls: `on_eval(generate, step)` (score DIO on each active skill's training level, apply
progression, check achievements), `on_checkpoint(generate, step, path)` (record the checkpoint's evals
and apply the champion rule, guild/champion.py) and `on_idle()` (write an idle quest into inbox/ when
nothing is waiting). The idle quest then goes through the same intake path as any dropped file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from arena.intake.inbox import waiting_files
from arena.queue import QuestQueue
from guild import champion
from guild.guild import Guild

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger(__name__)


def _quest_counts(realm: Realm) -> dict[str, int]:
    """Quests by status, through the arena's queue (the quests table is the arena's)."""
    return QuestQueue(realm.home, realm.store, realm.events).counts()


def _waiting_work(realm: Realm) -> bool:
    """True while a quest is queued, or a file sits in the inbox waiting for intake.

    "Waiting" is intake's own rule (`waiting_files`): a stray sidecar, a `.part` file or a folder
    is not a quest, and counting it once stopped idle quests for good."""
    counts = _quest_counts(realm)
    if counts["queued"] or counts["processing"]:
        return True
    return bool(waiting_files(realm.home.inbox))


def arena_hooks(realm: Realm):
    from arena.daemon import ArenaHooks

    guild = Guild.from_realm(realm)
    guild.ensure_eval_sets()
    started = time.time()
    waited: list[bool] = []  # the "nothing to schedule" warning is logged once

    def completed_quests() -> int:
        return _quest_counts(realm)["completed"]

    def on_eval(generate: Callable[[list[str]], list[str]], step: int) -> None:
        guild.evaluate(generate, step)
        guild.check_progress(step, completed_quests(), uptime_s=time.time() - started)

    def on_checkpoint(generate: Callable[[list[str]], list[str]], step: int, path: str) -> None:
        from vault.ledger import Ledger

        champion.on_checkpoint(guild, Ledger(realm.store, realm.events), generate, step, Path(path).name)

    def on_idle() -> None:
        if not realm.config.guild.auto_generate or _waiting_work(realm):
            return
        if not guild.scheduled:  # every active skill waits for a hero that can learn it
            if not waited:
                waited.append(True)
                log.warning("no idle quests: %s", "; ".join(f"{s} {w}" for s, w in guild.waiting.items()))
            return
        path = guild.write_idle_quest(realm.home.inbox)
        log.info("the guild posted an idle quest: %s", path.name)

    return ArenaHooks(on_eval=on_eval, on_checkpoint=on_checkpoint, on_idle=on_idle)
