"""The loss series for the battle chart, downsampled in SQLite so a 1M-step history stays fast.

Step events carry `loss` (train) and sometimes `val_loss`; `val`, `battle.end` and
`checkpoint.saved` events may carry `val_loss` too. The series is cut into `max_points / 2` buckets
along the chosen axis (step or wall time) and each bucket keeps its minimum and its maximum point,
so spikes and dips survive the downsampling (a mean would hide a divergence). The bucketing runs in
SQL with `json_extract`: no payload is parsed in Python, and SQLite's bare-column rule returns the
step and time of the row that holds each min or max.
"""

from __future__ import annotations

from typing import Any, Literal

from vault.store import Store

VAL_KINDS = ("step", "val", "battle.end", "checkpoint.saved")

Axis = Literal["step", "time"]


def _bucketed(store: Store, kinds: tuple[str, ...], field: str, axis: Axis, max_points: int) -> list[list]:
    marks = ",".join("?" * len(kinds))
    x = "ts" if axis == "time" else "step"
    # MATERIALIZED: json_extract runs once per row, then the bounds and both GROUP BYs read the
    # small temp table (three passes of json_extract over 1M rows cost ~8 s; one costs ~2 s).
    series = (
        f"WITH s AS MATERIALIZED (SELECT step, ts, v FROM (SELECT payload ->> '$.step' AS step, ts,"
        f" payload ->> '$.{field}' AS v FROM events WHERE kind IN ({marks})) WHERE v IS NOT NULL)"
    )
    params: list[Any] = list(kinds)
    conn = store.connect()
    sql = (
        f"{series}, b AS (SELECT count(*) AS n, min({x}) AS lo, max({x}) AS hi FROM s)"
        f" SELECT b.n, b.lo, b.hi, s.step, s.ts, s.v FROM b LEFT JOIN s ON b.n <= ? ORDER BY s.{x}, s.step"
    )
    rows = conn.execute(sql, [*params, max_points]).fetchall()
    n = int(rows[0][0] or 0) if rows else 0
    if n == 0:
        return []
    if n <= max_points:
        return [[r[3], r[4], r[5]] for r in rows]
    buckets = max(1, max_points // 2)
    lo, hi = float(rows[0][1]), float(rows[0][2])
    width = (hi - lo) / buckets or 1.0
    # SQLite's bare-column rule: with one min() or max() per query, step and ts come from that row.
    sql = (
        f"{series} SELECT * FROM (SELECT CAST(({x} - ?) / ? AS INTEGER) AS b, min(v) AS v, step, ts FROM s"
        f" GROUP BY b) UNION ALL SELECT * FROM (SELECT CAST(({x} - ?) / ? AS INTEGER) AS b, max(v) AS v,"
        " step, ts FROM s GROUP BY b)"
    )
    out: dict[tuple[Any, Any], list] = {}
    for r in conn.execute(sql, [*params, lo, width, lo, width]).fetchall():
        out[(r["step"], r["ts"])] = [r["step"], r["ts"], r["v"]]
    points = list(out.values())
    points.sort(key=lambda p: (p[1], p[0]) if axis == "time" else (p[0], p[1]))
    return points


def loss_series(store: Store, max_points: int = 2000, axis: Axis = "step") -> dict[str, Any]:
    """{"train": [[step, ts, loss]...], "val": [[step, ts, val_loss]...], "total": N, ...}."""
    max_points = max(4, min(int(max_points), 200_000))
    train = _bucketed(store, ("step",), "loss", axis, max_points)
    val = _bucketed(store, VAL_KINDS, "val_loss", axis, max_points)
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
