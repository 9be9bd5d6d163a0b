"""The vault: the realm's memory.

Owns the state store (one SQLite database, migrations), the event log, the realm-home layout, the
checkpoint ledger and the asset catalog across storage zones. Must not train or decide what to train.
"""
