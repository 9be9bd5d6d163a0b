"""The watchtower: reading the realm.

Owns read-only views: live status, the champion board, model comparison, lineage stats and metrics
export. Must never write training state.
"""
