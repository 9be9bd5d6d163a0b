"""Loss-chart history: GET /api/metrics's downsampling on a long history. Prints JSON.

    .venv/bin/python bench/metrics.py [--steps 1000000] [--max-points 2000] [--repeats 3]

Fills a real vault (SQLite file in a temporary home) with `--steps` step events (loss on each, a
val_loss on every 100th), then times `watchtower.metrics.loss_series` (what the page's chart calls)
on the step axis and the time axis, against the naive way: read every step event and downsample
in Python. Medians of `--repeats`.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--max-points", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from watchtower.metrics import loss_series

    from sentinels.realm import Realm

    with tempfile.TemporaryDirectory() as d:
        realm = Realm.open(Path(d))
        realm.init()
        t = time.perf_counter()
        fill(realm.store, a.steps)
        fill_s = time.perf_counter() - t
        step_s, res = timed(lambda: loss_series(realm.store, a.max_points, "step"), a.repeats)
        time_s, res_t = timed(lambda: loss_series(realm.store, a.max_points, "time"), a.repeats)
        naive_s, n_naive = timed(lambda: naive(realm.store, a.max_points), a.repeats)
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
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
