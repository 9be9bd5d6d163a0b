"""The loss series for the battle chart, downsampled at write time so a 1M-step history stays fast.

The read side of the vault's `series` and `rollup` tables (the vault fills them by trigger; the
watchtower reads them, and the Tavern's GET /api/metrics calls `loss_series`), moved here from
tavern/metrics.py so the Tavern runs no SQL on another room's tables (issue 12; issue 15 builds the
rest of the watchtower's read models).

Step events carry `loss` (train) and sometimes `val_loss`; `val`, `battle.end` and
`checkpoint.saved` events may carry `val_loss` too. The vault keeps those numbers of each event in
the narrow `series` table and, per metric and axis (step or wall time), a `rollup` of buckets at
levels of growing width (both filled by triggers on the event log, vault/schema.py). A chart of at
most P points reads every point when there are at most P, else the finest level with at most P/2
buckets; each bucket gives its minimum and its maximum point, so spikes and dips survive the
downsampling (a mean would hide a divergence). No payload is parsed, and no read scans the history.
"""

from __future__ import annotations

from typing import Any, Literal

from vault.schema import series_rows
from vault.store import Store

Axis = Literal["step", "time"]


def _series(store: Store, metric: str, axis: Axis, max_points: int) -> list[list]:
    """[[step, ts, value]...] of one metric: every point when they fit, else the rollup level with
    at most max_points / 2 buckets, each bucket giving its min and max point."""
    where = series_rows(metric)
    conn = store.connect()
    n = conn.execute(f"SELECT count(*) FROM series WHERE {where}").fetchone()[0]  # partial index
    if n <= max_points:
        order = "ts, step" if axis == "time" else "step, ts"
        rows = conn.execute(f"SELECT step, ts, {metric} FROM series WHERE {where} ORDER BY {order}")
        return [list(r) for r in rows]
    counts = conn.execute(
        "SELECT level, count(*) FROM rollup WHERE metric = ? AND axis = ? GROUP BY level ORDER BY level",
        [metric, axis],
    ).fetchall()
    fitting = [lv for lv, c in counts if c <= max(1, max_points // 2)]
    level = fitting[0] if fitting else counts[-1][0]
    points: dict[tuple[Any, Any], list] = {}
    for r in conn.execute(
        "SELECT lo, lo_step, lo_ts, hi, hi_step, hi_ts FROM rollup"
        " WHERE metric = ? AND axis = ? AND level = ? ORDER BY bucket",
        [metric, axis, level],
    ):
        for v, step, ts in ((r[0], r[1], r[2]), (r[3], r[4], r[5])):
            points[(step, ts)] = [step, ts, v]
    out = list(points.values())
    out.sort(key=lambda p: (p[1], p[0]) if axis == "time" else (p[0], p[1]))
    return out


def loss_series(store: Store, max_points: int = 2000, axis: Axis = "step") -> dict[str, Any]:
    """{"train": [[step, ts, loss]...], "val": [[step, ts, val_loss]...], "total": N, ...}."""
    max_points = max(4, min(int(max_points), 200_000))
    train = _series(store, "loss", axis, max_points)
    val = _series(store, "val_loss", axis, max_points)
    total = int(store.scalar("SELECT count(*) FROM events WHERE kind = 'step'") or 0)
    last_id = int(store.scalar("SELECT coalesce(max(id), 0) FROM events") or 0)
    return {
        "axis": axis,
        "max_points": max_points,
        "total_steps": total,
        "downsampled": total > len(train),
        "last_event_id": last_id,
        "columns": ["step", "ts", "value"],
        "train": train,
        "val": val,
    }
