"""The vault: the realm's memory.

Owns the state store (`store.py`, one SQLite database, `schema.py` migrations), the event log
(`events.py`), the realm-home layout (`home.py`), and every asset the realm keeps: content identity
(`identity.py`), ids and references (`ids.py`), the asset catalog across zones (`catalog.py`), the
checkpoint ledger with aliases and their history (`ledger.py`), retention (`retention.py`), and the
`VaultKeeper` that composes them (`keeper.py`) for the CLI (`cli.py`) and the API. It is the only
room that writes these tables. Must not train or decide what to train.
"""
