"""The watchtower: reading the realm.

Owns the read models, and the Tavern, the CLI and the Prometheus exporter read through it: status and
the hero card and game snapshot (`status.py`), skill cards (`skills.py`), the quest board
(`board.py`), the loss series (`metrics.py`), checkpoint comparison (`compare.py`), lineage
statistics (`lineage.py`), the champion board (`champion.py`), metrics export, and the commands
`realm compare` / `realm lineage` / `realm champion` (`cli.py`).

The rule it holds up: outside a table's owner room, SQL on that table may run only here
(tests/test_room_sql.py scans every room). Must never write: writes stay with each table's owner.
"""
