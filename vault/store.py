"""The state store: one SQLite database in the realm home, shared by every process.

Every room reaches the database through `Store`; none opens its own connection logic. The store
sets WAL mode (readers never block the writer), a busy timeout (a writer waits instead of failing
with "database is locked"), and applies the named migration sets of every room in order.

Writes are short: `with store.tx() as conn:` opens `BEGIN IMMEDIATE`, so a writer takes the write
lock up front instead of upgrading a read lock mid-transaction (the upgrade path is what produces
SQLITE_BUSY with no retry).
"""

from __future__ import annotations

import importlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

DB_NAME = "realm.db"
BUSY_TIMEOUT_MS = 30_000

# Each room that keeps state declares a `migrations` set in its own schema module; they apply in
# this order, so a later room may reference an earlier room's tables.
MIGRATION_MODULES = ("vault.schema", "arena.schema", "guild.schema")


def migration_sets() -> list[Migrations]:
    return [importlib.import_module(name).migrations for name in MIGRATION_MODULES]


class Store:
    """Thread-safe access to the realm database: one connection per thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    @classmethod
    def for_home(cls, home: str | Path) -> Store:
        return cls(Path(home) / DB_NAME)

    def connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN ourselves, so autocommit reads stay lock-free.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction that takes the write lock up front."""
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.connect().execute(sql, params).fetchall()]

    def one(self, sql: str, params: tuple | list | dict = ()) -> dict[str, Any] | None:
        row = self.connect().execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def scalar(self, sql: str, params: tuple | list | dict = ()) -> Any:
        row = self.connect().execute(sql, params).fetchone()
        return row[0] if row is not None else None

    def db(self) -> sqlite_utils.Database:
        """A sqlite-utils view over this thread's connection (for migrations and table helpers)."""
        return sqlite_utils.Database(self.connect())

    def migrate(self) -> list[str]:
        """Apply pending migrations of every room; returns the names applied now."""
        db = self.db()
        applied = []
        # One outer write transaction: two processes starting together cannot both see a
        # migration as pending (each set's own atomic() nests as a savepoint).
        with self.tx():
            for mset in migration_sets():
                pending = [m.name for m in mset.pending(db)]
                if pending:
                    mset.apply(db)
                    applied += [f"{mset.name}:{n}" for n in pending]
        return applied

    def applied_migrations(self) -> list[str]:
        db = self.db()
        return [f"{m.name}:{a.name}" for m in migration_sets() for a in m.applied(db)]

    def table_counts(self, tables: list[str]) -> dict[str, int]:
        return {t: int(self.scalar(f"SELECT count(*) FROM [{t}]")) for t in tables}

    def get_state(self, key: str, default: Any = None) -> Any:
        import orjson

        row = self.one("SELECT value FROM state WHERE key = ?", (key,))
        return orjson.loads(row["value"]) if row else default

    def set_state(self, key: str, value: Any) -> None:
        import orjson

        with self.tx() as conn:
            conn.execute(
                "INSERT INTO state(key, value, updated_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, orjson.dumps(value).decode()),
            )

    def increment_state(self, key: str, by: int = 1) -> int:
        """Add `by` to an integer state value (0 when absent) and return the new value; the read and
        the write share one write transaction, so two processes never get the same number."""
        import orjson

        with self.tx() as conn:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            value = (int(orjson.loads(row["value"])) if row else 0) + by
            conn.execute(
                "INSERT INTO state(key, value, updated_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, orjson.dumps(value).decode()),
            )
        return value
