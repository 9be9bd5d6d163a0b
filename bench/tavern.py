"""Tavern benchmark: push latency to many Socket.IO clients, and trainer throughput beside them.

    .venv/bin/python bench/tavern.py [--clients 100] [--events 200] [--train-seconds 8] [--json out.json]

1. Latency: a real `realm tavern` (gunicorn) on a free loopback port, N python-socketio clients on
   WebSocket; a writer thread calls EventLog.emit with the send time in the payload; every client
   records receipt - send. Reports p50/p95/max over all (client, event) pairs. Target p95 <= 250 ms.
2. Throughput: the real trainer (`realm arena` on DIO, a real BIN quest) in its own process, run
   with no clients connected and with N clients connected, alternating in the same run; every step
   event it writes is pushed to all connected clients.
   Reports median steps/s for each and the ratio. Target ratio >= 0.95.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.tavern")


BENCH_TRAINING = {"eval_every": 10**6, "save_steps": 10**6, "event_interval_s": 0.5}


def prepare_home(home: Path) -> None:
    """A realm home with one long real BIN quest queued (through intake), evals and idle quests off."""
    import yaml

    from arena.intake import Intake
    from guild.client import open_skill
    from guild.skills import load_skill
    from realm import Realm

    data = yaml.safe_load((REPO / "configs" / "realm.yaml").read_text())
    data["training"].update(BENCH_TRAINING)
    data["guild"]["auto_generate"] = False
    (home / "realm.yaml").write_text(yaml.safe_dump(data))
    realm = Realm.open(home)
    realm.init()
    items = open_skill(load_skill("bin")).generate(3, 400, 5)
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": it["prompt"]},
                    {"role": "assistant", "content": it["expected"]},
                ]
            }
        )
        for it in items
    ]
    (realm.home.inbox / "bench.jsonl.meta.json").write_text(
        json.dumps({"spec": "chat_sft_v1", "epochs": 1000})
    )
    (realm.home.inbox / "bench.jsonl").write_text("\n".join(dict.fromkeys(lines)) + "\n")
    [quest] = Intake.for_realm(realm).scan()
    assert quest.status == "queued", quest.reason


def run_trainer(home: Path, seconds: float) -> float:
    """The real trainer: `realm arena` in its own process; steps/s from its own step events.

    Start-up (loading the hero, resuming the checkpoint) is left out: the rate is measured from the
    first step event of this run to the last one `seconds` later. Each run ends with `stop`.
    """
    from arena import control
    from realm import Realm

    realm = Realm.open(home)
    start_id = realm.events.last_id()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "realm.py"), "arena", "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        deadline = time.time() + 120
        first = None
        while first is None and time.time() < deadline:
            evs = realm.events.since(start_id, kinds=["step"], limit=1)
            first = evs[0] if evs else None
            time.sleep(0.05)
        if first is None:
            raise RuntimeError("the arena produced no step event in 120 s")
        time.sleep(seconds)
        last = realm.events.since(first.id - 1, kinds=["step"], limit=10**6)[-1]
    finally:
        control.send(realm.store, realm.events, "stop")
        proc.wait(120)
    return (last.payload["step"] - first.payload["step"]) / (last.ts - first.ts)


def connect_clients(url: str, n: int, latencies: list[float], lock: threading.Lock) -> list:
    import socketio

    clients = []
    for _ in range(n):
        c = socketio.Client(reconnection=False)

        def on_events(evs, _c=c):
            now = time.time()
            with lock:
                latencies.extend(
                    now - e["payload"]["sent"] for e in evs if "sent" in e["payload"] and e["kind"] == "bench"
                )

        c.on("events", on_events)
        c.connect(url, transports=["websocket"], wait_timeout=20)
        clients.append(c)
    return clients


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="events per second during the latency test")
    ap.add_argument("--train-seconds", type=float, default=8.0)
    ap.add_argument("--pairs", type=int, default=3, help="alternating with/without-clients trainer runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    from realm import Realm
    from tests.conftest import free_port
    from tests.test_tavern_server import start_tavern, stop

    home = Path(tempfile.mkdtemp(prefix="tavern-bench-"))
    prepare_home(home)
    realm = Realm.open(home)
    port = free_port()
    proc = start_tavern(home, port)
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    lock = threading.Lock()
    runs: dict[str, list[float]] = {"no_clients": [], "with_clients": []}
    try:
        runs["no_clients"].append(run_trainer(home, args.train_seconds))
        t0 = time.perf_counter()
        clients = connect_clients(url, args.clients, latencies, lock)
        connect_s = time.perf_counter() - t0
        log.info("%d clients connected in %.1fs", len(clients), connect_s)
        time.sleep(0.5)
        for i in range(args.events):
            realm.events.emit("bench", i=i, sent=time.time())
            time.sleep(1.0 / args.rate)
        deadline = time.time() + 10
        while len(latencies) < args.clients * args.events and time.time() < deadline:
            time.sleep(0.05)
        received = len(latencies)
        # Alternate B/A/B/A... so a neighbour's burst on the shared machine hits both sides.
        for _ in range(args.pairs):
            runs["with_clients"].append(run_trainer(home, args.train_seconds))
            for c in clients:
                c.disconnect()
            time.sleep(0.5)
            runs["no_clients"].append(run_trainer(home, args.train_seconds))
            clients = connect_clients(url, args.clients, latencies, lock)
        for c in clients:
            c.disconnect()
    finally:
        stop(proc)
    none_sps = statistics.median(runs["no_clients"])
    with_sps = statistics.median(runs["with_clients"])
    ms = [v * 1000 for v in latencies]
    result = {
        "server": "gunicorn gthread (1 worker) + Flask-SocketIO threading + simple-websocket",
        "clients": args.clients,
        "events": args.events,
        "deliveries_expected": args.clients * args.events,
        "deliveries_received": received,
        "connect_all_s": round(connect_s, 2),
        "latency_ms": {
            "p50": round(statistics.median(ms), 1),
            "p95": round(pct(ms, 0.95), 1),
            "max": round(max(ms), 1),
        },
        "latency_target_p95_ms": 250,
        "trainer": "real: realm arena (DIO, BIN L3 quest) in its own process, step events every 0.5 s",
        "trainer_steps_per_s": {
            "no_clients": round(none_sps, 1),
            "with_clients": round(with_sps, 1),
            "runs": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
            "statistic": "median",
        },
        "throughput_ratio": round(with_sps / none_sps, 3),
        "throughput_target_ratio": 0.95,
    }
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
