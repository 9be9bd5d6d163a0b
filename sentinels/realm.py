"""The `Realm` facade: one process's handle on a realm (config + home + store + event log).

Every room that needs "the realm" takes a `Realm` from here. It lives in `sentinels/`, beside the
typed config it is built from, and not in the CLI module `realm.py`: the guardian runs `realm.py` as
`__main__`, so a room that imported `realm` would load that file a second time as another module
(two `Realm` classes, two click groups), and every room would depend on the CLI. Rooms import
`sentinels.realm`; `realm.py` imports it too and stays only the entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from sentinels.config import RealmConfig, load_config
from vault.events import EventLog
from vault.home import RealmHome
from vault.store import Store

# The long-running services `realm status` reports, by the lock each holds in run/.
SERVICES: tuple[str, ...] = ("guardian", "arena", "tavern", "vault", "oracle")


@dataclass
class Realm:
    """The facade: config + home + store + event log, opened once per process."""

    config: RealmConfig

    @classmethod
    def open(cls, home: str | Path | None = None, config_path: str | Path | None = None) -> Realm:
        return cls(load_config(config_path, home=home))

    @cached_property
    def home(self) -> RealmHome:
        return RealmHome(self.config.home_path)

    @cached_property
    def store(self) -> Store:
        return Store(self.home.db_path)

    @cached_property
    def events(self) -> EventLog:
        return EventLog(self.store)

    def init(self) -> list[str]:
        return self.home.init()

    def ensure(self) -> None:
        """Initialise the home if needed (cheap when it exists)."""
        self.init()

    def status(self) -> dict[str, Any]:
        """Home, database, table counts, quests by status, services up, the hero and the battle.

        The read model is the watchtower's (`watchtower.status.realm_status`); the facade only
        offers it, imported here because the watchtower imports the rooms this module must not."""
        from watchtower.status import realm_status

        return realm_status(self)
