"""Tavern benchmark: push latency to many Socket.IO clients, and trainer throughput beside them.

    .venv/bin/python bench/tavern.py [--clients 100] [--events 200] [--window 15] [--pairs 4] [--json out.json]

1. Latency: a real `realm tavern` (gunicorn, at its configured niceness) on a free loopback port, N
   python-socketio clients on WebSocket; a writer thread calls EventLog.emit with the send time in
   the payload; every client records receipt - send. Reports p50/p95/max over all (client, event)
   pairs. Target p95 <= 250 ms.
2. Throughput: the real trainer (`realm arena` on DIO, a real BIN quest) runs once, in its own
   process, for the whole phase; windows of `--window` seconds alternate between no clients
   connected and N clients connected (connecting and disconnecting happen between windows). Every
   step event the trainer writes is pushed to all connected clients. A window's rate is the
   trainer's own step count over its own timestamps (first to last step event in the window).
   Reports the median steps/s of each side and the ratio. Target ratio >= 0.95.
   The clients stand in for browsers, which live on other machines: in this phase the bench
   process that hosts them runs at niceness 19, so that it models remote clients instead of
   taking the trainer's cores itself. The Tavern server gets no such help: it runs as `realm up`
   runs it, at `tavern.nice` (10). Latency seen by the clients during the windows is reported too.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def start_trainer(home: Path) -> subprocess.Popen:
    """The real trainer: `realm arena` in its own process; returns once it has stepped."""
    from realm import Realm

    realm = Realm.open(home)
    start_id = realm.events.last_id()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "realm.py"), "arena", "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    deadline = time.time() + 120
    while not realm.events.since(start_id, kinds=["step"], limit=1):
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the arena produced no step event in 120 s")
        time.sleep(0.1)
    return proc


def window_rate(realm, seconds: float) -> float:
    """The running trainer's steps/s over the next `seconds`, from its own step events."""
    start_id = realm.events.last_id()
    time.sleep(seconds)
    evs = realm.events.since(start_id, kinds=["step"], limit=10**6)
    if len(evs) < 2:
        raise RuntimeError(f"only {len(evs)} step events in a {seconds}s window")
    return (evs[-1].payload["step"] - evs[0].payload["step"]) / (evs[-1].ts - evs[0].ts)


def connect_clients(
    url: str, n: int, latencies: list[float], lock: threading.Lock, step_latencies: list[float]
) -> list:
    import socketio

    clients = []
    for _ in range(n):
        c = socketio.Client(reconnection=False)

        def on_events(evs, _c=c):
            now = time.time()
            with lock:
                for e in evs:
                    if e["kind"] == "bench":
                        latencies.append(now - e["payload"]["sent"])
                    elif e["kind"] == "step":
                        step_latencies.append(now - e["ts"])

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
    ap.add_argument("--window", type=float, default=15.0, help="seconds per trainer throughput window")
    ap.add_argument("--pairs", type=int, default=4, help="(no clients, clients) window pairs")
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
    tavern_nice = os.getpriority(os.PRIO_PROCESS, proc.pid)
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    step_latencies: list[float] = []
    lock = threading.Lock()
    runs: dict[str, list[float]] = {"no_clients": [], "with_clients": []}
    trainer = None
    try:
        # ---- 1. latency, no trainer running
        t0 = time.perf_counter()
        clients = connect_clients(url, args.clients, latencies, lock, step_latencies)
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
        for c in clients:
            c.disconnect()
        # ---- 2. throughput: one trainer, alternating windows without and with clients
        trainer = start_trainer(home)
        os.nice(19)  # the clients model remote browsers (see the module docstring)
        time.sleep(3)  # past the first steps' warm-up
        for i in range(args.pairs):
            runs["no_clients"].append(window_rate(realm, args.window))
            clients = connect_clients(url, args.clients, latencies, lock, step_latencies)
            time.sleep(1)
            runs["with_clients"].append(window_rate(realm, args.window))
            for c in clients:
                c.disconnect()
            time.sleep(1)
            log.info("pair %d: %.2f vs %.2f steps/s", i, runs["no_clients"][-1], runs["with_clients"][-1])
    finally:
        if trainer is not None:
            from arena import control

            control.send(realm.store, realm.events, "stop")
            trainer.wait(120)
        stop(proc)
    none_sps = statistics.median(runs["no_clients"])
    with_sps = statistics.median(runs["with_clients"])
    ms = [v * 1000 for v in latencies]
    step_ms = [v * 1000 for v in step_latencies]
    result = {
        "server": "gunicorn gthread (1 worker) + Flask-SocketIO threading + simple-websocket",
        "tavern_niceness": tavern_nice,
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
        "step_event_latency_while_training_ms": {
            "n": len(step_ms),
            "p50": round(statistics.median(step_ms), 1) if step_ms else None,
            "p95": round(pct(step_ms, 0.95), 1) if step_ms else None,
        },
        "trainer": "real: realm arena (DIO, BIN L3 quest), one process for the whole phase, step events every 0.5 s",
        "window_s": args.window,
        "trainer_steps_per_s": {
            "no_clients": round(none_sps, 2),
            "with_clients": round(with_sps, 2),
            "runs": {k: [round(v, 2) for v in vs] for k, vs in runs.items()},
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
