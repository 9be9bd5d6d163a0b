"""Status read models: `realm status`, the hero card and the Tavern's game snapshot.

Owns what "the realm right now" looks like to a reader: table counts, quests by status, services up,
the hero card, the battle, pending battle commands and achievements. Every number comes from its
owner's read function where the owner has one (`QuestQueue.counts`, `arena.reporting.read_hero` with
its stat formulas, `arena.control.pending`/`battle_state`, `guild.progression`), so a rule has one
home; the watchtower only assembles them. Must not write anything: `Realm.status()`, `realm status`,
the Tavern's GET /api/state and the Prometheus exporter all read through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arena import control
from arena.presets import fmt_params, hero_label
from arena.queue import QuestQueue
from arena.reporting import XP_PER_LEVEL, read_hero
from guild.progression import unlocked_achievements
from sentinels.config import REPO_ROOT

if TYPE_CHECKING:
    from sentinels.realm import Realm

# The tables `realm status` counts (each owned by its room; counting is a read).
COUNTED_TABLES: tuple[str, ...] = ("events", "quests", "checkpoints", "evals", "achievements")


def table_counts(realm: Realm) -> dict[str, int]:
    # Table names come from the constant above, never from a caller, so the f-string is safe.
    conn = realm.store.connect()
    return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in COUNTED_TABLES}


def quest_counts(realm: Realm) -> dict[str, int]:
    return QuestQueue(realm.home, realm.store, realm.events).counts()


def hero_card(realm: Realm, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The hero as the trainer published it (stats, and its preset, memory profile with the reason,
    trainable and total parameters), plus `label` (the model's display name) and `loadout`, the
    card's one line ("Qwen3-0.6B · lora · 10.1M / 596M trainable")."""
    counts = quest_counts(realm) if counts is None else counts
    hero = read_hero(realm.store, realm.events, counts.get("completed", 0))
    hero.setdefault("name", realm.config.hero.name)
    hero.setdefault("acc", 0)  # not published yet; the card keeps its slot
    # A hero state from before the trainer published these still gives the same keys.
    for key in ("preset", "profile", "profile_reason", "trainable_params", "params"):
        hero.setdefault(key, None)
    hero["label"] = hero_label(realm.config.hero, REPO_ROOT, hero["preset"])
    hero["loadout"] = loadout(hero, hero["label"])
    return hero


def loadout(hero: dict[str, Any], label: str) -> str:
    """The card's line: the model, its profile and trainable / total parameters, for example
    "Qwen3-0.6B · lora · 10.1M / 596M trainable", or "DIO · full · 2.41M" when every parameter
    trains; parts the trainer has not published are left out."""
    parts = [label]
    if hero.get("profile"):
        parts.append(str(hero["profile"]))
    total, trainable = hero.get("params"), hero.get("trainable_params")
    if total and trainable and trainable != total:
        parts.append(f"{fmt_params(trainable)} / {fmt_params(total)} trainable")
    elif total:
        parts.append(fmt_params(total))
    return " · ".join(parts)


def pending_commands(realm: Realm) -> list[dict[str, Any]]:
    return control.pending(realm.store)


def achievements(realm: Realm) -> list[dict[str, Any]]:
    return unlocked_achievements(realm.store)


def realm_status(realm: Realm) -> dict[str, Any]:
    """Home, database, table counts, quests by status, inbox files, services up, hero and battle."""
    from arena.intake.inbox import waiting_files
    from sentinels.locks import is_held
    from sentinels.realm import SERVICES

    realm.ensure()
    hero = realm.store.get_state("hero", {})
    return {
        "home": str(realm.home.root),
        "database": str(realm.home.db_path),
        "counts": table_counts(realm),
        "quests": quest_counts(realm),
        "inbox_files": len(waiting_files(realm.home.inbox)),  # intake's one rule for "waiting"
        "services": {name: is_held(realm.home.run, name) for name in SERVICES},
        "hero": hero,
        "hero_line": loadout(hero, hero_label(realm.config.hero, REPO_ROOT, hero.get("preset"))),
        "battle": realm.store.get_state("battle", {}),
    }


def snapshot(realm: Realm) -> dict[str, Any]:
    """Hero, battle, quest counts, skills and achievements in one read (the Tavern adds `auth`).

    The event head is read first: anything emitted while we read is then re-sent by catch-up, never
    missed (the page de-duplicates by event id)."""
    from watchtower.skills import skill_cards  # the guild's skill files: ~0.1 s `realm status` skips

    last_id = realm.events.last_id()
    counts = quest_counts(realm)
    return {
        "last_event_id": last_id,
        "hero": hero_card(realm, counts),
        "battle": control.battle_state(realm.store) or {"state": "idle"},
        "pending_commands": pending_commands(realm),
        "quests": counts,
        "skills": skill_cards(realm.store, realm.config.guild, realm.config.hero),
        "achievements": achievements(realm),
        "xp_per_level": XP_PER_LEVEL,
    }
