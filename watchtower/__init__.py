"""The watchtower: reading the realm.

Owns read-only views: live status, the champion board, model comparison, lineage stats and metrics
export. Must never write training state.

So far: `metrics.py`, the loss chart's read side of the vault's `series` and `rollup` tables. The
other read models join it with the Watchtower issue (#15).
"""
