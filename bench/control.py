"""Battle-control latency: how soon the trainer obeys `realm pause`, on the default batch geometry. Prints JSON.

    .venv/bin/python bench/control.py [--pauses 5]

A fresh home with one long BIN-like quest queued; the real `realm arena` trains on it with the
default training config (2 rows x 2,048 tokens a step; checkpoints, evals and idle quests off). The
bench sends `pause` through the same control path as `realm pause`, `--pauses` times with a resume
and a few steps between, and measures each command's row (its ts) to the trainer's `trainer.paused`
event. The trainer takes commands between steps, so this is at most about one step. Target: under
2 s (tests/test_trainer.py checks that pause, resume, skip and stop work; this bench, how soon).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_S = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pauses", type=int, default=5, help="pause/resume cycles measured")
    args = ap.parse_args()

    from arena import control
    from bench._common import REALM_PY, bin_chats, clean_env, enqueue, wait_until, write_home_config
    from vault.events import EventLog
    from vault.store import Store

    home = Path(tempfile.mkdtemp(prefix="control-bench-"))
    off = 10**6
    training = write_home_config(
        home, {"training.save_steps": off, "training.eval_every": off, "guild.auto_generate": False}
    )["training"]
    enqueue(home, "control-bench.jsonl", bin_chats(12000, seed=0, bits=7))
    store = Store.for_home(home)
    events = EventLog(store)
    proc = subprocess.Popen(
        [sys.executable, str(REALM_PY), "arena", "--home", str(home)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latencies: list[float] = []
    try:
        mark = 0
        for _ in range(args.pauses):
            # A few steps into fighting (after the start, or after the last resume), then pause.
            wait_until(
                lambda m=mark: len(events.since(m, kinds=["step"], limit=3)) >= 3, 300, "steps", proc=proc
            )
            cid = control.send(store, events, "pause")
            sent = store.one("SELECT ts FROM commands WHERE id = ?", [cid])["ts"]
            paused = wait_until(
                lambda m=mark: events.since(m, kinds=["trainer.paused"], limit=1),
                120,
                "trainer.paused",
                proc=proc,
            )[0]
            latencies.append(paused.ts - sent)
            mark = events.last_id()
            control.send(store, events, "resume")
        # For scale: the trainer's own throughput (a pause waits for the step in progress).
        tokens_per_s = statistics.median(
            e.payload["tokens_per_s"] for e in events.since(0, kinds=["step"], limit=10**6)
        )
    finally:
        control.send(store, events, "stop")
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        store.close()
    result = {
        "bench": "control",
        "geometry": f"{training['batch_size']} x {training['max_length']} tokens a step (the default config)",
        "pauses": len(latencies),
        "pause_latency_s": {
            "median": round(statistics.median(latencies), 3),
            "max": round(max(latencies), 3),
            "all": [round(v, 3) for v in latencies],
        },
        "pause_latency_target_s": TARGET_S,
        "trainer_tokens_per_s_median": round(tokens_per_s),
        "arena_exit_code": proc.returncode,
        "home": str(home),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
