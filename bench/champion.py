"""The champion board over many checkpoints: `watchtower.champion.board`'s read time. Prints JSON.

    .venv/bin/python bench/champion.py [--checkpoints 1000] [--skills 2] [--moves 200] [--repeats 7]

Fills a real realm home (SQLite file in a temporary folder): `--checkpoints` ledger rows through the
vault's own `Ledger.record`, one `checkpoint_evals` row per checkpoint and skill (each with five
scored problems, the size the guild stores), and `--moves` champion moves through
`Ledger.set_alias`. Then times the board as `realm champion --json` and GET /api/champion build it:
every live checkpoint ranked by the rule, all rows returned (and the Tavern's default page of 100),
with the champion's history. Medians of `--repeats`; the target is 50 ms for 1,000 checkpoints.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_S = 0.050


def fill(realm, checkpoints: int, skills: int, moves: int, seed: int = 0) -> None:
    from vault.ledger import Ledger

    rng = random.Random(seed)
    ledger = Ledger(realm.store, realm.events)
    models = realm.home.models
    names = []
    for i in range(1, checkpoints + 1):
        step = 500 * i
        name = f"checkpoint-{step}-20260101-{(i // 60) % 24:02d}{i % 60:02d}"
        names.append(name)
        ledger.record(
            models / name,
            {
                "step": step,
                "name": name,
                "timestamp": "2026-01-01T00:00:00+0000",
                "train_loss": 2.0 / (1 + i / 100),
                "val_loss": 2.1 / (1 + i / 100) + rng.uniform(0, 0.05),
                "learning_rate": 1e-3,
                "training_file": f"quest-{i // 10}.jsonl",
                "size_bytes": 29_000_000,
            },
        )
    items = json.dumps(
        [{"prompt": "Compute: add(①⓪①, ①①)", "expected": "①⓪⓪⓪", "answer": "①⓪⓪⓪", "correct": True}] * 5,
        ensure_ascii=False,
    )
    rows = []
    for i, name in enumerate(names, 1):
        for k in range(skills):
            mastered = i * (k + 1) // 200
            correct = rng.randint(0, 5)
            rows.append(
                (
                    name,
                    500 * i,
                    f"s{k}",
                    mastered + 1,
                    mastered,
                    5,
                    correct,
                    correct / 5,
                    "quick",
                    None,
                    0.2,
                    1.7e9,
                    items,
                )
            )
    with realm.store.tx() as conn:
        conn.executemany(
            "INSERT INTO checkpoint_evals (checkpoint, step, skill, level, mastered_level, n, correct, accuracy,"
            " source, eval_id, seconds, ts, items) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    for name in sorted(rng.sample(names, min(moves, len(names))), key=lambda n: int(n.split("-")[1])):
        ledger.set_alias("champion", name, by="guild", reason=f"{name} beats the champion")


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=1000)
    ap.add_argument("--skills", type=int, default=2)
    ap.add_argument("--moves", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()

    from sentinels.realm import Realm
    from watchtower.champion import board

    with tempfile.TemporaryDirectory() as d:
        realm = Realm.open(Path(d))
        realm.init()
        t = time.perf_counter()
        fill(realm, a.checkpoints, a.skills, a.moves)
        fill_s = time.perf_counter() - t
        board(realm.store)  # the first read opens this thread's connection
        all_s, all_runs, out = timed(lambda: board(realm.store), a.repeats)
        page_s, _, _ = timed(lambda: board(realm.store, limit=100), a.repeats)
        realm.store.close()
    print(
        json.dumps(
            {
                "checkpoints": a.checkpoints,
                "skills": a.skills,
                "champion_moves": a.moves,
                "fill_s": round(fill_s, 2),
                "board_all_rows_median_s": round(all_s, 4),
                "board_all_rows_runs_s": [round(x, 4) for x in all_runs],
                "board_page_of_100_median_s": round(page_s, 4),
                "ranked": out["evaluated"],
                "history_rows": len(out["history"]),
                "target_s": TARGET_S,
                "within_target": all_s <= TARGET_S,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
