"""The game's snapshot: hero, battle, quest counts, skills and achievements in one read.

GET /api/state returns this; the page renders it, then applies events newer than
`last_event_id`. Every number comes from the room that owns it, through that room's functions: the
hero card from `arena.reporting.read_hero` (the one hero state and its formulas), quest counts from
`QuestQueue.counts`, pending commands from `arena.control.pending`, skills and achievements from the
guild. The Tavern runs no SQL of its own (tests/test_tavern_reads.py checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arena import control
from arena.queue import QuestQueue
from arena.reporting import XP_PER_LEVEL, read_hero
from guild.progression import unlocked_achievements
from tavern.skills import skill_cards

if TYPE_CHECKING:
    from sentinels.realm import Realm


def quest_counts(realm: Realm) -> dict[str, int]:
    return QuestQueue(realm.home, realm.store, realm.events).counts()


def hero_card(realm: Realm, counts: dict[str, int] | None = None) -> dict[str, Any]:
    counts = quest_counts(realm) if counts is None else counts
    hero = read_hero(realm.store, realm.events, counts.get("completed", 0))
    hero.setdefault("name", realm.config.hero.name)
    hero.setdefault("acc", 0)  # not published yet; the card keeps its slot
    return hero


def pending_commands(realm: Realm) -> list[dict[str, Any]]:
    return control.pending(realm.store)


def achievements(realm: Realm) -> list[dict[str, Any]]:
    return unlocked_achievements(realm.store)


def snapshot(realm: Realm, auth: dict[str, Any]) -> dict[str, Any]:
    store = realm.store
    # Read the event head first: anything emitted while we read is then re-sent by catch-up,
    # never missed (the page de-duplicates by event id).
    last_id = realm.events.last_id()
    counts = quest_counts(realm)
    return {
        "last_event_id": last_id,
        "hero": hero_card(realm, counts),
        "battle": control.battle_state(store) or {"state": "idle"},
        "pending_commands": pending_commands(realm),
        "quests": counts,
        "skills": skill_cards(store, realm.config.guild),
        "achievements": achievements(realm),
        "auth": auth,
        "xp_per_level": XP_PER_LEVEL,
    }
