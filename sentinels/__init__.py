"""The sentinels: the realm's guards.

Owns what every process passes through before it does anything: typed config (`config.py`) and the one
typed-file mechanism (`typed.py`), the `Realm` facade (`realm.py`), the helpers room CLIs share
(`clikit.py`), per-process logs (`logs.py`), the guardian that supervises services, single-instance
locks, and (later) health and disk checks. Must not hold feature logic, nor import `realm` (the CLI).
"""
