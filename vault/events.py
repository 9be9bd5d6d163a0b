"""The event log: the one interface through which progress leaves any room.

Append-only rows (id, ts, kind, payload JSON). Writers call `emit(kind, **payload)`; readers (the
Tavern relay, the CLI, tests) call `since(last_id)` and never need to know who wrote. Ids come from
AUTOINCREMENT, so they are strictly increasing across processes and never reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from vault.store import Store


@dataclass(frozen=True)
class Event:
    id: int
    ts: float
    kind: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "kind": self.kind, "payload": self.payload}


class EventLog:
    def __init__(self, store: Store):
        self.store = store

    def emit(self, kind: str, **payload: Any) -> int:
        """Append one event; returns its id. One short transaction, safe from any process."""
        body = orjson.dumps(payload, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        with self.store.tx() as conn:
            cur = conn.execute(
                "INSERT INTO events(ts, kind, payload) VALUES (?, ?, ?)", (time.time(), kind, body)
            )
            return int(cur.lastrowid)

    def since(self, last_id: int = 0, kinds: list[str] | None = None, limit: int = 1000) -> list[Event]:
        """Events with id > last_id, oldest first. `kinds` filters by exact kind or by prefix `battle.*`."""
        sql = "SELECT id, ts, kind, payload FROM events WHERE id > ?"
        params: list[Any] = [int(last_id)]
        if kinds:
            clauses = []
            for k in kinds:
                if k.endswith(".*"):
                    clauses.append("kind LIKE ?")
                    params.append(k[:-1] + "%")
                else:
                    clauses.append("kind = ?")
                    params.append(k)
            sql += " AND (" + " OR ".join(clauses) + ")"
        sql += " ORDER BY id LIMIT ?"
        params.append(int(limit))
        rows = self.store.connect().execute(sql, params).fetchall()
        return [Event(r["id"], r["ts"], r["kind"], orjson.loads(r["payload"])) for r in rows]

    def last_id(self) -> int:
        return int(self.store.scalar("SELECT coalesce(max(id), 0) FROM events"))

    def latest(self, kind: str) -> Event | None:
        r = self.store.one(
            "SELECT id, ts, kind, payload FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)
        )
        return Event(r["id"], r["ts"], r["kind"], orjson.loads(r["payload"])) if r else None
