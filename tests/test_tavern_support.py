"""Helpers for the Tavern tests (no tests here): a realm seeded through the real interfaces.

Until the trainer and the guild land, the tests write what those rooms will write, through the same
interfaces they use: EventLog.emit for events, Store.set_state for the battle/hero state,
QuestQueue for quests, and plain INSERTs into the guild's evals/skills/achievements tables.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import orjson

from arena.queue import QuestQueue


def queue_of(realm) -> QuestQueue:
    return QuestQueue(realm.home, realm.store, realm.events)


def add_quest(realm, name: str = "bin-l1.jsonl", lines: int = 4, priority: str = "normal"):
    src = realm.home.inbox / name
    src.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"q{i}"},
                        {"role": "assistant", "content": f"a{i}"},
                    ]
                }
            )
            + "\n"
            for i in range(lines)
        )
    )
    return queue_of(realm).enqueue(src, name=name, priority=priority, example_count=lines, spec="chat_sft_v1")


def reject_quest(realm, name: str = "broken.jsonl", reason: str = "line 1: not valid JSON"):
    src = realm.home.inbox / name
    src.write_text("{not json\n")
    return queue_of(realm).reject(
        src, name=name, reason=reason, error={"validator": "spec", "errors": [{"line": 1, "message": reason}]}
    )


def loss_at(step: int) -> float:
    return 2.5 * math.exp(-step / 400) + 0.3 + 0.05 * math.sin(step / 7)


def emit_steps(
    realm, start: int, count: int, quest_id: int = 1, total: int = 1000, sleep: float = 0.0
) -> None:
    for step in range(start, start + count):
        payload = {
            "step": step,
            "loss": loss_at(step),
            "lr": 2e-3,
            "tokens_per_s": 4000.0,
            "examples_per_s": 16.0,
            "quest_id": quest_id,
            "progress": min(1.0, step / total),
            "eta_s": max(0, total - step) * 0.1,
            "xp": step,
            "level": step // 1000,
        }
        if step % 50 == 0:
            payload["val_loss"] = loss_at(step) + 0.1
        realm.events.emit("step", **payload)
        if sleep:
            time.sleep(sleep)
    realm.store.set_state(
        "battle",
        {
            "state": "fighting",
            "quest_id": quest_id,
            "quest_name": "bin-l1.jsonl",
            "step": start + count - 1,
            "loss": loss_at(start + count - 1),
            "progress": min(1.0, (start + count - 1) / total),
            "eta_s": 12.0,
            "tokens_per_s": 4000.0,
        },
    )


def seed_guild(realm) -> None:
    """Evals with items, skill levels and one achievement, as the guild will write them."""
    items = [
        {"prompt": "①⓪ + ①① = ?", "expected": "①⓪①", "response": "①⓪①", "correct": True},
        {"prompt": "①① - ⓪① = ?", "expected": "①⓪", "response": "①①", "correct": False},
    ]
    with realm.store.tx() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO skills(id, mastered_level, xp, updated_at) VALUES ('bin', 2, 40, 'now')"
        )
        conn.execute(
            "INSERT OR REPLACE INTO skills(id, mastered_level, xp, updated_at) VALUES ('sy', 0, 5, 'now')"
        )
        for i, acc in enumerate([0.6, 0.8, 1.0, 0.8]):
            conn.execute(
                "INSERT INTO evals(ts, step, skill, level, n, correct, accuracy, seconds, items)"
                " VALUES (?, ?, 'bin', 3, 5, ?, ?, 1.0, ?)",
                (time.time(), 100 * (i + 1), round(acc * 5), acc, orjson.dumps(items).decode()),
            )
        conn.execute(
            "INSERT OR REPLACE INTO achievements(id, name, description, unlocked_at) VALUES"
            " ('first_blood', 'First Blood', 'Finish the first quest', '2026-01-01T00:00:00Z')"
        )


def write_jsonl(path: Path, rows: list[dict] | None = None, raw: str | None = None) -> Path:
    path.write_text(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in rows or []))
    return path
