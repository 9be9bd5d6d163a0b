"""Loss-chart history and /metrics scrapes on a long history. Prints JSON.

    .venv/bin/python bench/metrics.py [--steps 1000000] [--max-points 2000] [--repeats 3] [--scrapes 15]

Fills a real vault (SQLite file in a temporary home) with `--steps` step events (loss on each, a
val_loss on every 100th), then times `watchtower.metrics.loss_series` (what the page's chart calls)
on the step axis and the time axis, against the naive way: read every step event and downsample
in Python. Medians of `--repeats`.

Then GET /metrics (watchtower/metrics_export.py) on that home, the median of `--scrapes` scrapes
each: in-process (the collector and the text encoding), and over real HTTP from a real Tavern
(`realm tavern`) and a real VaultKeeper API (`realm vault serve`) on free loopback ports. The
target is 50 ms with 1M events in the log.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fill(store, steps: int) -> None:
    t0 = 1.7e9
    rows = []
    for s in range(1, steps + 1):
        p = {"step": s, "loss": round(3.0 * math.exp(-s / 2e5) + 0.1 * math.sin(s / 50), 5), "lr": 1e-3}
        if s % 100 == 0:
            p["val_loss"] = p["loss"] + 0.05
        rows.append((t0 + s * 0.3, "step", json.dumps(p)))
    with store.tx() as conn:
        conn.executemany("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)", rows)


def naive(store, max_points: int) -> int:
    """Every step event into Python, then min/max per bucket."""
    pts = []
    for (payload,) in store.connect().execute("SELECT payload FROM events WHERE kind = 'step'"):
        p = json.loads(payload)
        pts.append((p["step"], p["loss"]))
    buckets: dict[int, list] = {}
    width = max(1, len(pts) // (max_points // 2))
    for s, v in pts:
        b = buckets.setdefault(s // width, [v, v])
        b[0], b[1] = min(b[0], v), max(b[1], v)
    return 2 * len(buckets)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


SCRAPE_TARGET_S = 0.050


def time_scrapes(home: Path, realm, scrapes: int) -> dict:
    """Median seconds of a /metrics scrape: in-process, then over HTTP from the Tavern and the Vault."""
    import subprocess

    import requests
    from prometheus_client import generate_latest

    from bench._common import REALM_PY, clean_env, free_port, start_tavern, stop, wait_health
    from watchtower.metrics_export import make_registry

    registry = make_registry(realm)
    generate_latest(registry)  # warm: imports and the first connection
    in_process_s, body = timed(lambda: generate_latest(registry), scrapes)
    out = {"in_process_s": round(in_process_s, 5), "bytes": len(body)}
    port = free_port()
    tavern = start_tavern(home, port)
    vport = free_port()
    vault = subprocess.Popen(
        [sys.executable, str(REALM_PY), "vault", "serve", "--home", str(home), "--port", str(vport)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_health(vport, vault, timeout=60)
        with requests.Session() as http:
            for name, p in (("tavern", port), ("vault", vport)):
                url = f"http://127.0.0.1:{p}/metrics"
                http.get(url, timeout=30).raise_for_status()  # warm
                s, r = timed(lambda url=url: http.get(url, timeout=30), scrapes)
                assert r.status_code == 200 and "realm_steps_total" in r.text, r.text[:500]
                out[f"{name}_http_s"] = round(s, 5)
    finally:
        stop(tavern)
        stop(vault)
    out["target_s"] = SCRAPE_TARGET_S
    out["within_target"] = (
        max(v for k, v in out.items() if k.endswith("_s") and k != "target_s") <= SCRAPE_TARGET_S
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--max-points", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scrapes", type=int, default=15, help="/metrics scrapes per way (median)")
    a = ap.parse_args()
    from sentinels.realm import Realm
    from watchtower.metrics import loss_series

    with tempfile.TemporaryDirectory() as d:
        realm = Realm.open(Path(d))
        realm.init()
        t = time.perf_counter()
        fill(realm.store, a.steps)
        fill_s = time.perf_counter() - t
        step_s, res = timed(lambda: loss_series(realm.store, a.max_points, "step"), a.repeats)
        time_s, res_t = timed(lambda: loss_series(realm.store, a.max_points, "time"), a.repeats)
        naive_s, n_naive = timed(lambda: naive(realm.store, a.max_points), a.repeats)
        scrape = time_scrapes(Path(d), realm, a.scrapes)
        print(
            json.dumps(
                {
                    "steps": a.steps,
                    "max_points": a.max_points,
                    "fill_s": round(fill_s, 2),
                    "loss_series_step_axis_s": round(step_s, 3),
                    "loss_series_time_axis_s": round(time_s, 3),
                    "points": {
                        "train": len(res["train"]),
                        "val": len(res["val"]),
                        "time_axis": len(res_t["train"]),
                    },
                    "naive_python_s": round(naive_s, 3),
                    "naive_points": n_naive,
                    "speedup_vs_naive": round(naive_s / step_s, 2),
                    "metrics_scrape": scrape,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
