"""Progression: skill levels and XP, the hero's level, and achievements.

Rules: a skill's mastered level starts at 0 and it trains at mastered + 1. It levels up when the mean
accuracy of its last `guild.level_up_window` evals at the training level reaches the threshold
(`guild.level_up_threshold`, or the skill's own `eval.pass_threshold`). Fewer evals than the window
never level up. XP: every correct eval answer is worth its level.

The hero's level and stats are the arena's (`arena.reporting`, which publishes the one hero state);
the guild only announces each new hero level once (`hero.level_up`), and those events are the record
of what it has announced.

The read functions at the end are how other rooms (the Tavern) read the guild's tables; they never
write, unlike `skill_row`, which creates a missing row for the guild's own use.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from arena.reporting import hero_level
from vault.events import EventLog
from vault.store import Store

HERO_LEVEL_UP = "hero.level_up"


@dataclass(frozen=True)
class Achievement:
    id: str
    name: str
    description: str


ACHIEVEMENTS = {
    a.id: a
    for a in (
        Achievement("first_quest", "First Quest", "DIO completed a quest."),
        Achievement("quests_10", "Journeyman", "Ten quests completed."),
        Achievement("quests_100", "Veteran", "A hundred quests completed."),
        Achievement("steps_1k", "Thousand Cuts", "1,000 training steps."),
        Achievement("steps_10k", "Ten Thousand Cuts", "10,000 training steps."),
        Achievement("steps_100k", "Legend of the Arena", "100,000 training steps."),
        Achievement("first_level_up", "Apprentice", "A skill levelled up for the first time."),
        Achievement("skill_level_5", "Adept", "A skill reached mastered level 5."),
        Achievement("skill_level_10", "Expert", "A skill reached mastered level 10."),
        Achievement("all_skills", "Polymath", "Every active skill has at least one mastered level."),
        Achievement("first_perfect", "Flawless", "An eval with every answer correct."),
        Achievement("first_champion", "Champion", "A checkpoint was crowned champion."),
        Achievement("week_uptime", "Never Sleeps", "The realm ran for a week without stopping."),
    )
}
WEEK_S = 7 * 24 * 3600


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def skill_row(store: Store, skill_id: str) -> dict[str, Any]:
    row = store.one("SELECT id, mastered_level, xp FROM skills WHERE id = ?", (skill_id,))
    if row is None:
        with store.tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO skills(id, mastered_level, xp, updated_at) VALUES (?, 0, 0, ?)",
                (skill_id, _now()),
            )
        row = {"id": skill_id, "mastered_level": 0, "xp": 0}
    return row


def recent_accuracies(store: Store, skill_id: str, level: int, window: int) -> list[float]:
    rows = store.query(
        "SELECT accuracy FROM evals WHERE skill = ? AND level = ? ORDER BY id DESC LIMIT ?",
        (skill_id, level, window),
    )
    return [r["accuracy"] for r in rows]


def level_record(store: Store, skill_id: str, level: int) -> dict[str, Any]:
    """How many evals the skill has had at this level, and the best of them (the planner's stall test)."""
    row = store.one(
        "SELECT count(*) AS n, coalesce(max(accuracy), 0.0) AS best FROM evals WHERE skill = ? AND level = ?",
        (skill_id, level),
    )
    return {"evals_at_level": int(row["n"]), "best_at_level": float(row["best"])}


def should_level_up(accuracies: list[float], window: int, threshold: float) -> bool:
    """The rule in one place: a full window whose mean reaches the threshold."""
    # The epsilon keeps (1.0 + 1.0 + 0.4) / 3 = 0.7999999999999999 from missing a 0.8 threshold.
    return len(accuracies) >= window and sum(accuracies[:window]) / window >= threshold - 1e-9


def unlock(store: Store, events: EventLog, achievement_id: str, **payload: Any) -> bool:
    """Unlock once; emits achievement.unlocked only the first time. Returns whether it was new."""
    a = ACHIEVEMENTS[achievement_id]
    with store.tx() as conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO achievements(id, name, description, unlocked_at, payload) VALUES (?, ?, ?, ?, ?)",
            (a.id, a.name, a.description, _now(), json.dumps(payload)),
        )
        new = cur.rowcount == 1
    if new:
        events.emit("achievement.unlocked", id=a.id, name=a.name, description=a.description)
    return new


def check_hero(events: EventLog, step: int) -> int | None:
    """Emit hero.level_up when the hero's level at `step` passes the last level announced; returns the
    new level or None. The last hero.level_up event is that record (no state of its own to drift)."""
    level = hero_level(step)
    last = events.latest(HERO_LEVEL_UP)
    known = int(last.payload.get("level", 0)) if last else 0
    if level <= known:
        return None
    events.emit(HERO_LEVEL_UP, level=level, step=step)
    return level


def check_milestones(
    store: Store, events: EventLog, step: int, completed_quests: int, uptime_s: float | None = None
) -> list[str]:
    """Step, quest and uptime achievements; returns the ids unlocked now."""
    wanted = [
        ("first_quest", completed_quests >= 1),
        ("quests_10", completed_quests >= 10),
        ("quests_100", completed_quests >= 100),
        ("steps_1k", step >= 1_000),
        ("steps_10k", step >= 10_000),
        ("steps_100k", step >= 100_000),
        ("week_uptime", uptime_s is not None and uptime_s >= WEEK_S),
    ]
    return [aid for aid, ok in wanted if ok and unlock(store, events, aid, step=step)]


# --- reads for other rooms (no writes) -------------------------------------------------------------
def training_level(mastered: int, max_level: int | None) -> int:
    """The level a skill trains and is evaluated at: one above mastered, never above max_level."""
    return mastered + 1 if max_level is None else min(mastered + 1, int(max_level))


def level_up_threshold(own: float | None, default: float) -> float:
    """A skill's own eval.pass_threshold when it sets one, else guild.level_up_threshold."""
    return own if own is not None else default


def skill_levels(store: Store) -> dict[str, dict[str, Any]]:
    """{skill id: {"mastered_level", "xp"}} for every skill with progress stored."""
    rows = store.query("SELECT id, mastered_level, xp FROM skills")
    return {r["id"]: {"mastered_level": int(r["mastered_level"]), "xp": int(r["xp"])} for r in rows}


def eval_history(store: Store, skill_id: str) -> list[dict[str, Any]]:
    """Every eval of a skill, oldest first, without its items."""
    return store.query(
        "SELECT id, ts, step, level, n, correct, accuracy FROM evals WHERE skill = ? ORDER BY id",
        (skill_id,),
    )


def recent_evals(store: Store, skill_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The newest evals of a skill, newest first, each with its scored items."""
    rows = store.query("SELECT * FROM evals WHERE skill = ? ORDER BY id DESC LIMIT ?", (skill_id, int(limit)))
    for r in rows:
        try:
            r["items"] = json.loads(r["items"] or "[]")
        except json.JSONDecodeError:
            r["items"] = []
    return rows


def unlocked_achievements(store: Store) -> list[dict[str, Any]]:
    """Unlocked achievements, newest first."""
    return store.query(
        "SELECT id, name, description, unlocked_at FROM achievements ORDER BY unlocked_at DESC, id"
    )
