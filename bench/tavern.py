"""Tavern benchmark: push latency to many Socket.IO clients, and trainer throughput beside them.

    .venv/bin/python bench/tavern.py [--clients 100] [--events 200] [--train-seconds 8] [--json out.json]

1. Latency: a real `realm tavern` (gunicorn) on a free loopback port, N python-socketio clients on
   WebSocket; a writer thread calls EventLog.emit with the send time in the payload; every client
   records receipt - send. Reports p50/p95/max over all (client, event) pairs. Target p95 <= 250 ms.
2. Throughput: a training loop in a separate process (LABELLED STAND-IN: a CPU-bound torch MLP
   that emits throttled step events like the trainer, until the real trainer is swapped in), run
   with no clients connected and with N clients connected, alternating in the same run.
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


def stand_in_trainer(home: str, seconds: float) -> dict:
    """CPU-bound torch loop + a step event every 0.5 s (the trainer's default throttle)."""
    import torch

    from realm import Realm

    realm = Realm.open(home)
    # One intra-op thread: with OpenMP's spin-waiting, a 2-thread loop on a shared 2-core box
    # swings 50x whenever anything else runs, which would measure the neighbours, not the Tavern.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 256))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(64, 256)
    steps, last_emit = 0, 0.0
    t0 = time.perf_counter()
    while (now := time.perf_counter()) - t0 < seconds:
        loss = (model(x) - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if now - last_emit >= 0.5:
            realm.events.emit("step", step=steps, loss=float(loss), sent=time.time(), stand_in=True)
            last_emit = now
    elapsed = time.perf_counter() - t0
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed}


def run_trainer(home: Path, seconds: float) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "_trainer", "--home", str(home), "--train-seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]


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
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "_trainer"])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="events per second during the latency test")
    ap.add_argument("--train-seconds", type=float, default=4.0)
    ap.add_argument("--pairs", type=int, default=3, help="alternating with/without-clients trainer runs")
    ap.add_argument("--home", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.mode == "_trainer":
        sys.stdout.write(json.dumps(stand_in_trainer(args.home, args.train_seconds)) + "\n")
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    from realm import Realm
    from tests.conftest import free_port
    from tests.test_tavern_server import start_tavern, stop

    home = Path(tempfile.mkdtemp(prefix="tavern-bench-"))
    realm = Realm.open(home)
    realm.init()
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
        "trainer": "STAND-IN: CPU-bound torch MLP loop (1 thread) in a separate process, step events every 0.5 s (not the real trainer)",
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
