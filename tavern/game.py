"""The game's snapshot: hero, battle, quest counts, skills and achievements in one read.

GET /api/state returns this; the page renders it, then applies events newer than
`last_event_id`. The hero card prefers the guild's `hero` state; before the guild writes one, the
numbers come from the latest step event (xp = steps) and the seed's rules (a level per 1000 xp,
gold = completed quests x 100), so the card is never empty.
"""

from __future__ import annotations

from typing import Any

import orjson

from tavern.skills import skill_cards

XP_PER_LEVEL = 1000
GOLD_PER_QUEST = 100


def hero_card(realm: Any) -> dict[str, Any]:
    store = realm.store
    hero = dict(store.get_state("hero", {}) or {})
    last_step = realm.events.latest("step")
    step = last_step.payload if last_step else {}
    hero.setdefault("name", realm.config.hero.name)
    xp = int(hero.get("xp", step.get("xp", step.get("step", 0))) or 0)
    level = int(hero.get("level", step.get("level", xp // XP_PER_LEVEL)) or 0)
    floor = int(hero.get("level_xp", level * XP_PER_LEVEL))
    nxt = int(hero.get("next_level_xp", (level + 1) * XP_PER_LEVEL))
    if "gold" not in hero:
        done = store.scalar("SELECT count(*) FROM quests WHERE status = 'completed'") or 0
        hero["gold"] = int(done) * GOLD_PER_QUEST
    if "atk" not in hero and step.get("loss"):
        hero["atk"] = round(10.0 / max(float(step["loss"]), 1e-3), 1)
    hero.update(xp=xp, level=level, level_xp=floor, next_level_xp=max(nxt, floor + 1))
    for key in ("atk", "def", "acc"):
        hero.setdefault(key, 0)
    return hero


def pending_commands(realm: Any) -> list[dict[str, Any]]:
    rows = realm.store.query("SELECT id, ts, action, args FROM commands WHERE status = 'pending' ORDER BY id")
    for r in rows:
        r["args"] = orjson.loads(r["args"] or "{}")
    return rows


def achievements(realm: Any) -> list[dict[str, Any]]:
    return realm.store.query(
        "SELECT id, name, description, unlocked_at FROM achievements ORDER BY unlocked_at DESC, id"
    )


def snapshot(realm: Any, auth: dict[str, Any]) -> dict[str, Any]:
    store = realm.store
    # Read the event head first: anything emitted while we read is then re-sent by catch-up,
    # never missed (the page de-duplicates by event id).
    last_id = realm.events.last_id()
    counts = {
        r["status"]: r["n"] for r in store.query("SELECT status, count(*) AS n FROM quests GROUP BY status")
    }
    return {
        "last_event_id": last_id,
        "hero": hero_card(realm),
        "battle": store.get_state("battle", {}) or {"state": "idle"},
        "pending_commands": pending_commands(realm),
        "quests": {
            s: counts.get(s, 0)
            for s in ("queued", "processing", "completed", "failed", "skipped", "cancelled")
        },
        "skills": skill_cards(store, realm.config.guild),
        "achievements": achievements(realm),
        "auth": auth,
        "xp_per_level": XP_PER_LEVEL,
    }
