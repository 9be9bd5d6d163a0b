"""How progress leaves the trainer: events, the published battle/hero state, and the hero's stats.

The fit loop calls one small sink, `Reporter`, and never the event log or the store directly. Only
the main process (rank 0) reports; other ranks get a Reporter with `enabled=False`.

Sinks. Everything the Reporter emits goes to its sinks in order (`MetricSink`, modelled on torchtune's
`MetricLoggerInterface`: `log`, `log_dict`, `close`, plus `emit` for a whole event). The SQLite event
log (`EventLogSink`) is always the first, and its errors propagate as before: it is the realm's record.
Further sinks come from the config (`sinks_for`): with `training.tensorboard: true`, a `TensorBoardSink`
writes the scalars the events carry (train loss, lr, speed, the hero's stats; val loss at battle end)
as TensorBoard event files under <home>/logs/tb, so `tensorboard --logdir <home>/logs/tb` shows the
curves. A failing extra sink is logged and dropped; it never stops the training.

Event kinds written here: step (throttled to one per training.event_interval_s), battle.start,
battle.end, checkpoint.saved, trainer.paused, trainer.resumed, trainer.stopped, trainer.error.

This module owns the hero's stats: their formulas, the one hero state (`HERO_STATE`), and how a
reader gets them back (`read_hero`). The guild (hero level-ups) and the Tavern (the hero card) call
these functions and keep no formula of their own. Why here and not in the guild: every input lives in
the trainer (optimizer steps, train and val loss, the tokenizer's vocabulary, completed battles), the
Reporter already publishes the result, and the arena must not import guild logic (only the guild's
hooks), while the guild and the Tavern may read what the arena publishes.

Hero stats (published as state "hero"; each step event carries xp, level, atk, def and gold too):
    XP    = global optimizer steps taken, ever
    Level = XP // 1000  (the level spans XP [level * 1000, (level + 1) * 1000): level_xp, next_level_xp)
    Gold  = completed quests * 100
    ATK   = 100 * clamp((L0 - train_loss) / (L0 - L*), 0, 1)
    DEF   = 100 * clamp((L0 - val_loss) / (L0 - L*), 0, 1)
where L0 = ln(vocab size), the loss of a uniform guess (where every hero starts), and L* is
hero.target_loss (default 0). Normalising by the achievable range L0 - L* (as seed 004 does for
rewards) makes ATK and DEF comparable across heroes with different vocabularies: 50 means the hero
has removed half of the loss there was to remove, whatever its tokenizer. ATK or DEF is None while
its loss is unknown.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.events import EventLog
from vault.store import Store

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.arena.reporting")

HERO_STATE = "hero"
"""The one published hero state (the guild's old `guild.hero` key is dropped by guild migration m002)."""
XP_PER_LEVEL = 1000
GOLD_PER_QUEST = 100
STEP_HERO_FIELDS = ("xp", "level", "atk", "def", "gold")
"""The hero's stats each step event carries, so a reader of the event stream needs no formula."""
BATTLE_STEP_FIELDS = ("step", "loss", "progress", "eta_s", "tokens_per_s", "tokens")
"""What each step publishes into the battle state (`tokens`, trained ever, when the trainer sends it)."""
TB_DIR = "tb"
"""TensorBoard's folder under <home>/logs."""


def hero_level(xp: int) -> int:
    return int(xp) // XP_PER_LEVEL


def level_progress(xp: int) -> dict[str, int]:
    """XP, the level it gives, and the XP where that level starts and the next one starts."""
    level = hero_level(xp)
    return {
        "xp": int(xp),
        "level": level,
        "level_xp": level * XP_PER_LEVEL,
        "next_level_xp": (level + 1) * XP_PER_LEVEL,
    }


def normalised_power(loss: float | None, vocab_size: int | None, target_loss: float = 0.0) -> float | None:
    """0 at the uniform-guess loss ln(vocab), 100 at target_loss (see the module docstring);
    None when the loss, or the vocabulary it is measured against, is unknown."""
    if loss is None or not math.isfinite(loss) or not vocab_size:
        return None
    baseline = math.log(vocab_size)
    span = max(baseline - target_loss, 1e-9)
    return round(100.0 * min(1.0, max(0.0, (baseline - loss) / span)), 2)


def hero_stats(
    *,
    step: int,
    train_loss: float | None,
    val_loss: float | None,
    completed: int,
    vocab_size: int | None,
    target_loss: float = 0.0,
) -> dict[str, Any]:
    return {
        **level_progress(step),
        "atk": normalised_power(train_loss, vocab_size, target_loss),
        "def": normalised_power(val_loss, vocab_size, target_loss),
        "gold": completed * GOLD_PER_QUEST,
        "completed_quests": completed,
    }


def read_hero(store: Store, events: EventLog, completed_quests: int) -> dict[str, Any]:
    """The hero's stats as the trainer last reported them.

    The published `hero` state when there is one; else the stats the latest step event carries (a
    home whose trainer has not published the state yet); else a hero that has not fought, with gold
    for `completed_quests`. The level fields are recomputed from XP, so a state published before
    they existed still gives a full card."""
    hero = store.get_state(HERO_STATE)
    if not hero:
        last = events.latest("step")
        payload = last.payload if last else {}
        xp = int(payload.get("xp", payload.get("step", 0)) or 0)
        hero = hero_stats(
            step=xp, train_loss=None, val_loss=None, completed=completed_quests, vocab_size=None
        )
        hero.update({k: payload[k] for k in ("atk", "def", "gold") if k in payload})
    return {**hero, **level_progress(int(hero.get("xp") or 0))}


# ---- sinks ------------------------------------------------------------------------------------------
class MetricSink:
    """Where reported events and scalars go. torchtune's `MetricLoggerInterface` (log, log_dict,
    close) plus `emit`, which sees every event whole; a sink keeps what it understands."""

    def emit(self, kind: str, payload: Mapping[str, Any]) -> None:
        """One reported event (`step`, `battle.end`, `checkpoint.saved`, ...)."""

    def log(self, name: str, data: float, step: int) -> None:
        """One scalar at a step."""

    def log_dict(self, payload: Mapping[str, float], step: int) -> None:
        for name, data in payload.items():
            self.log(name, data, step)

    def close(self) -> None:
        """Flush and release; called once when the trainer stops."""


class EventLogSink(MetricSink):
    """The first sink: the SQLite event log, the realm's record (the Tavern, the CLI and /metrics read it)."""

    def __init__(self, events: EventLog):
        self.events = events

    def emit(self, kind: str, payload: Mapping[str, Any]) -> None:
        self.events.emit(kind, **payload)

    def log(self, name: str, data: float, step: int) -> None:
        self.events.emit("metric", name=name, value=data, step=step)


# TensorBoard tags per event kind: payload key -> tag. Val loss is measured at the end of a battle
# (checkpoint.saved repeats the last value, so it is not logged again from there).
TB_TAGS: dict[str, dict[str, str]] = {
    "step": {
        "loss": "train/loss",
        "lr": "train/lr",
        "tokens_per_s": "speed/tokens_per_s",
        "examples_per_s": "speed/examples_per_s",
        "tokens": "train/tokens",
        "atk": "hero/atk",
        "def": "hero/def",
        "level": "hero/level",
    },
    "val": {"val_loss": "val/loss"},
    "battle.end": {"val_loss": "val/loss"},
}
TB_FLUSH_KINDS = ("battle.end", "checkpoint.saved", "trainer.paused", "trainer.stopped", "trainer.error")


class TensorBoardSink(MetricSink):
    """Scalars as TensorBoard event files in `log_dir` (torch.utils.tensorboard's SummaryWriter).

    The writer opens at the first scalar with `purge_step` set to that step: after a restart from an
    earlier checkpoint, TensorBoard hides the steps the crashed run logged past it, so the curve has
    no doubled segment. Written every `flush_secs`, at each battle end, checkpoint and stop, and at exit."""

    def __init__(self, log_dir: Path, flush_secs: int = 5):
        self.log_dir, self.flush_secs = Path(log_dir), flush_secs
        self._writer: Any = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    def _open(self, step: int) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # only when TensorBoard is on

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.log_dir), purge_step=step, flush_secs=self.flush_secs)
        return self._writer

    def emit(self, kind: str, payload: Mapping[str, Any]) -> None:
        step = payload.get("step")
        tags = TB_TAGS.get(kind, {})
        scalars = {tag: payload[k] for k, tag in tags.items() if _is_number(payload.get(k))}
        if scalars and isinstance(step, int):
            self.log_dict(scalars, step)
        if kind in TB_FLUSH_KINDS and self._writer is not None:
            with self._lock:
                self._writer.flush()

    def log(self, name: str, data: float, step: int) -> None:
        with self._lock:
            self._open(step).add_scalar(name, float(data), global_step=step)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def sinks_for(realm: Realm) -> list[MetricSink]:
    """The sinks the config asks for beyond the event log (which the Reporter always has first)."""
    sinks: list[MetricSink] = []
    if realm.config.training.tensorboard:
        sinks.append(TensorBoardSink(realm.home.logs / TB_DIR))
    return sinks


# ---- the reporter ---------------------------------------------------------------------------------
class Reporter:
    """Events and published state, throttled; a no-op when disabled (ranks other than 0)."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        *,
        interval_s: float,
        enabled: bool = True,
        sinks: Sequence[MetricSink] = (),
    ):
        self.store, self.events = store, events
        self.interval_s = interval_s
        self.enabled = enabled
        self._last_step_event = 0.0
        self.battle: dict[str, Any] = {"state": "idle"}
        self.sinks: list[MetricSink] = [EventLogSink(events), *sinks]

    def emit(self, kind: str, **payload: Any) -> None:
        if not self.enabled:
            return
        self.sinks[0].emit(kind, payload)  # the event log: its errors are the caller's
        for sink in list(self.sinks[1:]):
            try:
                sink.emit(kind, payload)
            except Exception:  # a metrics side channel must never stop the training
                log.exception("metric sink %s failed; dropping it", type(sink).__name__)
                self.sinks.remove(sink)

    def close(self) -> None:
        for sink in self.sinks[1:]:
            try:
                sink.close()
            except Exception:
                log.exception("closing metric sink %s failed", type(sink).__name__)

    def publish(self, force: bool = False, **battle: Any) -> None:
        """Update the battle state; written to the store at most once per interval unless forced."""
        self.battle.update(battle)
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._last_step_event >= self.interval_s:
            self.store.set_state("battle", {**self.battle, "updated": time.time()})

    def due(self) -> bool:
        """Whether the next `step` would be written (the throttle's interval has passed)."""
        return self.enabled and time.monotonic() - self._last_step_event >= self.interval_s

    def step(self, payload: dict[str, Any], hero: dict[str, Any], force: bool = False) -> bool:
        """A step event + battle and hero state, throttled together; True when written."""
        if not self.enabled:
            return False
        now = time.monotonic()
        battle = {k: payload[k] for k in BATTLE_STEP_FIELDS if k in payload}
        if not force and now - self._last_step_event < self.interval_s:
            self.battle.update(battle)
            return False
        self._last_step_event = now
        # The event carries the hero's stats from the same dict as the state, so the two cannot differ.
        self.emit("step", **{**payload, **{k: hero[k] for k in STEP_HERO_FIELDS if k in hero}})
        self.publish(force=True, **battle)
        self.store.set_state(HERO_STATE, hero)
        return True

    def hero(self, hero: dict[str, Any]) -> None:
        if self.enabled:
            self.store.set_state(HERO_STATE, hero)
