"""Lineage report: `realm lineage` / GET /api/lineage over a large quests table. Prints JSON.

    .venv/bin/python bench/lineage.py [--quests 100000] [--repeats 3]

Fills a real realm database (SQLite file in a temporary home) with `--quests` quest rows shaped as
intake writes them (a lineage JSON with a generator, the refusing validator or the validators passed,
a source of inbox / upload / guild; about one in five refused, with reasons that differ only by line
number), then times `watchtower.lineage.lineage_stats`, the whole report. Median of `--repeats`.
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

GENERATORS = ["bin", "sy", "hand.chat", None]
SOURCES = ["inbox", "upload", "guild"]
REFUSALS = [
    ("spec.chat_sft_v1", "line {n}: 'messages' must be a list of {{role, content}}; got a string"),
    ("intake.json", "line {n}: not JSON: unexpected character"),
    ("content.quarantine", "line {n}: the prompt is an eval prompt (quarantined)"),
    ("intake.extension", "extension '.txt' is not accepted: quests are .jsonl files"),
]


def fill(store, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        gen = rng.choice(GENERATORS)
        lineage: dict = {"original_name": f"q{i}.jsonl", "spec": "chat_sft_v1"}
        if gen:
            lineage["generator"] = {"id": gen, "version": 1}
        refused = rng.random() < 0.2
        if refused:
            validator, reason = rng.choice(REFUSALS)
            lineage["validator"] = validator
            reason = reason.format(n=rng.randint(1, 500))
            status = "failed"
        else:
            lineage["validator"] = None
            lineage["validators"] = {"intake.content": 2, "spec.chat_sft_v1": 2}
            reason, status = None, rng.choice(["queued", "completed"])
        rows.append(
            (
                f"q{i}.jsonl",
                status,
                "chat_sft_v1",
                rng.choice(SOURCES),
                reason,
                None if refused else rng.randint(1, 500),
                rng.randint(1, 500),
                json.dumps(lineage),
                "2026-01-01T00:00:00Z",
            )
        )
    with store.tx() as conn:
        conn.executemany(
            "INSERT INTO quests (name, status, spec, source, reason, example_count, line_count, lineage,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quests", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from sentinels.realm import Realm
    from watchtower.lineage import lineage_stats

    with tempfile.TemporaryDirectory() as tmp:
        realm = Realm.open(Path(tmp))
        realm.init()
        t = time.perf_counter()
        fill(realm.store, args.quests)
        fill_s = time.perf_counter() - t
        times, report = [], {}
        for _ in range(args.repeats):
            t = time.perf_counter()
            report = lineage_stats(realm.store)
            times.append(time.perf_counter() - t)
        realm.store.close()
    print(
        json.dumps(
            {
                "quests": args.quests,
                "fill_s": round(fill_s, 2),
                "lineage_ms_median": round(1000 * statistics.median(times), 1),
                "lineage_ms_all": [round(1000 * x, 1) for x in times],
                "refused": report["totals"]["quests"]["refused"],
                "top_reason": report["totals"]["top_reasons"][0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
