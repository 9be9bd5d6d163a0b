"""Preemption latency: from a player's drop into the inbox to the first step on that quest. Prints JSON.

    .venv/bin/python bench/preempt.py [--drops 5]

A fresh home with one long guild idle quest queued (source guild, low priority, BIN-like chats);
the real `realm arena` fights it with the default training config (2 rows x 2,048 tokens a step;
periodic checkpoints, periodic evals and idle quests off; `arena.preempt` at its default, idle).
`--drops` times, a few steps into the idle battle, the bench renames a small player's quest into
inbox/ (as a finished copy appears) and times that moment to the first `step` event on the new
quest (the trainer always reports a battle's first step). The player quest is one step long, so the
idle quest resumes before the next drop. The latency splits into intake (drop -> quest.queued), the
switch (queued -> battle.start: the step in progress finishes, the idle quest is requeued, the new
one is read and formatted) and the first step. Target: a median of at most 5 s (issue 16, item 7).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_S = 5.0


def say_chats(n: int, tag: str) -> list[dict]:
    """Distinct chats no eval set holds, so intake's quarantine keeps every line."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"say {tag}-{i}"},
                {"role": "assistant", "content": f"{tag}-{i}"},
            ]
        }
        for i in range(n)
    ]


def queue_idle_quest(home: Path, records: list[dict]) -> int:
    """Queue a guild idle quest as intake would after its checks (source guild, low priority)."""
    from arena.queue import QuestQueue
    from bench._common import write_jsonl
    from sentinels.realm import Realm

    realm = Realm.open(home)
    realm.init()
    try:
        src = write_jsonl(home / ".idle.tmp", records)
        return (
            QuestQueue(realm.home, realm.store, realm.events)
            .enqueue(
                src,
                name="guild-idle.jsonl",
                priority="low",
                spec="chat_sft_v1",
                source="guild",
                example_count=len(records),
            )
            .id
        )
    finally:
        realm.store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drops", type=int, default=5, help="player quests dropped while the idle quest fights")
    args = ap.parse_args()

    from arena import control
    from bench._common import REALM_PY, bin_chats, clean_env, wait_until, write_home_config, write_jsonl
    from vault.events import EventLog
    from vault.store import Store

    home = Path(tempfile.mkdtemp(prefix="preempt-bench-"))
    off = 10**6
    cfg = write_home_config(
        home, {"training.save_steps": off, "training.eval_every": off, "guild.auto_generate": False}
    )
    idle = queue_idle_quest(home, bin_chats(12000, seed=0, bits=7))
    store = Store.for_home(home)
    events = EventLog(store)
    proc = subprocess.Popen(
        [sys.executable, str(REALM_PY), "arena", "--home", str(home)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[dict] = []
    try:
        mark = 0
        for i in range(args.drops):
            # A few steps into the idle battle (its start, or its resume after the last drop).
            wait_until(
                lambda m=mark: [e for e in events.since(m, kinds=["step"]) if e.payload["quest_id"] == idle][
                    2:
                ],
                600,
                "steps on the idle quest",
                proc=proc,
            )
            name = f"player-{i}.jsonl"
            tmp = write_jsonl(home / "inbox" / f".{name}.part", say_chats(40, f"d{i}"))
            tmp.rename(home / "inbox" / name)
            dropped = time.time()
            queued = wait_until(
                lambda m=mark, n=name: [
                    e for e in events.since(m, kinds=["quest.queued"]) if e.payload["name"] == n
                ],
                120,
                f"{name} queued",
                proc=proc,
            )[0]
            qid = queued.payload["quest_id"]
            first = wait_until(
                lambda m=mark, q=qid: [
                    e for e in events.since(m, kinds=["step"]) if e.payload["quest_id"] == q
                ],
                120,
                f"the first step on {name}",
                proc=proc,
            )[0]
            start = [e for e in events.since(mark, kinds=["battle.start"]) if e.payload["quest_id"] == qid][0]
            rows.append(
                {
                    "drop_to_first_step_s": first.ts - dropped,
                    "intake_s": queued.ts - dropped,
                    "switch_s": start.ts - queued.ts,
                    "first_step_s": first.ts - start.ts,
                }
            )
            # The idle quest is back in battle before the next drop.
            wait_until(
                lambda f=first.id: [
                    e for e in events.since(f, kinds=["battle.start"]) if e.payload["quest_id"] == idle
                ],
                600,
                "the idle quest resumed",
                proc=proc,
            )
            mark = events.last_id()
        tokens_per_s = statistics.median(
            e.payload["tokens_per_s"] for e in events.since(0, kinds=["step"], limit=10**6)
        )
        preempted = len(events.since(0, kinds=["battle.preempted"], limit=10**6))
    finally:
        control.send(store, events, "stop")
        try:
            proc.wait(180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        store.close()
    latencies = [r["drop_to_first_step_s"] for r in rows]
    training = cfg["training"]
    result = {
        "bench": "preempt",
        "geometry": f"{training['batch_size']} x {training['max_length']} tokens a step (the default config)",
        "drops": len(rows),
        "preemptions": preempted,
        "drop_to_first_step_s": {
            "median": round(statistics.median(latencies), 3),
            "max": round(max(latencies), 3),
            "all": [round(v, 3) for v in latencies],
        },
        "median_parts_s": {
            k: round(statistics.median(r[k] for r in rows), 3)
            for k in ("intake_s", "switch_s", "first_step_s")
        },
        "target_s": TARGET_S,
        "trainer_tokens_per_s_median": round(tokens_per_s),
        "step_s_estimate": round(training["batch_size"] * training["max_length"] / tokens_per_s, 3),
        "arena_exit_code": proc.returncode,
        "home": str(home),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
