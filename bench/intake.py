"""Intake benchmark: throughput at STANDARD against a plain json.loads loop, and drop-to-queued latency.

Run: .venv/bin/python bench/intake.py [--lines 200000] [--repeats 3] [--drops 15]
Prints one JSON object. Everything is generated into a temporary folder and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arena.intake import Intake  # noqa: E402
from arena.intake.watcher import InboxWatcher  # noqa: E402
from sentinels.config import IntakeConfig  # noqa: E402
from sentinels.realm import Realm  # noqa: E402


def make_chat_file(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            row = {
                "messages": [
                    {"role": "system", "content": "You are DIO, a careful apprentice."},
                    {"role": "user", "content": f"What is {i} plus {i * 7}? Show the sum only."},
                    {"role": "assistant", "content": str(i + i * 7)},
                ],
                "metadata": {"source": "bench", "i": i},
            }
            f.write(json.dumps(row) + "\n")


def plain_loop(path: Path) -> float:
    t = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            json.loads(line)
    return time.perf_counter() - t


def intake_once(src: Path, root: Path) -> float:
    realm = Realm.open(root)
    realm.init()
    intake = Intake(realm.home, realm.store, realm.events, IntakeConfig(level="standard", quarantine=True))
    dest = realm.home.inbox / "bench.jsonl"
    shutil.copyfile(src, dest)
    t = time.perf_counter()
    quest = intake.process_file(dest)
    elapsed = time.perf_counter() - t
    assert quest is not None and quest.status == "queued", quest
    realm.store.close()
    return elapsed


def latency(root: Path, drops: int) -> list[float]:
    realm = Realm.open(root)
    realm.init()
    intake = Intake.for_realm(realm)
    out = []
    with InboxWatcher(intake):
        time.sleep(0.2)
        for i in range(drops):
            body = json.dumps({"prompt": f"ping {i}", "completion": "pong"}) + "\n"
            t = time.perf_counter()
            (realm.home.inbox / f"drop{i}.jsonl").write_text(body)
            while not realm.store.scalar(
                "SELECT 1 FROM quests WHERE name = ? AND status = 'queued'", (f"drop{i}.jsonl",)
            ):
                time.sleep(0.002)
            out.append(time.perf_counter() - t)
    realm.store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--drops", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="realm-bench-") as tmp:
        tmp_path = Path(tmp)
        src = tmp_path / "chat.jsonl"
        make_chat_file(src, args.lines)
        plain, ours = [], []
        for r in range(args.repeats):  # interleaved so drift on a shared machine hits both alike
            plain.append(plain_loop(src))
            ours.append(intake_once(src, tmp_path / f"home{r}"))
        lat = latency(tmp_path / "lat", args.drops)
        size = src.stat().st_size
    p, o = statistics.median(plain), statistics.median(ours)
    print(
        json.dumps(
            {
                "lines": args.lines,
                "file_mb": round(size / 2**20, 1),
                "repeats": args.repeats,
                "plain_json_loads_s": round(p, 3),
                "intake_standard_s": round(o, 3),
                "plain_lines_per_s": round(args.lines / p),
                "intake_lines_per_s": round(args.lines / o),
                "ratio_vs_plain": round(p / o, 2),
                "latency_drops": args.drops,
                "latency_median_s": round(statistics.median(lat), 3),
                "latency_max_s": round(max(lat), 3),
                "settle_s": IntakeConfig().settle_s,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
