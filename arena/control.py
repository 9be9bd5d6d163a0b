"""Battle control: pause, resume, stop and skip, through the state store.

The CLI, the Tavern and any later API send commands with `send()`; the trainer takes them with
`take_pending()` between steps. Going through the database means every caller shares one path and
a command sent while the trainer is busy is not lost.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from vault.events import EventLog
from vault.store import Store

ACTIONS = ("pause", "resume", "stop", "skip")


class ControlError(ValueError):
    pass


def send(store: Store, events: EventLog, action: str, **args: Any) -> int:
    if action not in ACTIONS:
        raise ControlError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    with store.tx() as conn:
        cur = conn.execute(
            "INSERT INTO commands(ts, action, args) VALUES (?, ?, ?)",
            (time.time(), action, orjson.dumps(args).decode()),
        )
        cid = int(cur.lastrowid)
    events.emit("control.sent", command_id=cid, action=action, **args)
    return cid


def take_pending(store: Store) -> list[dict[str, Any]]:
    """Claim every pending command, oldest first (one transaction, so none is taken twice)."""
    with store.tx() as conn:
        rows = conn.execute(
            "SELECT id, ts, action, args FROM commands WHERE status = 'pending' ORDER BY id"
        ).fetchall()
        if rows:
            conn.execute(
                f"UPDATE commands SET status = 'done', done_at = ? WHERE id IN ({','.join('?' * len(rows))})",
                [time.time(), *[r["id"] for r in rows]],
            )
    return [
        {"id": r["id"], "ts": r["ts"], "action": r["action"], "args": orjson.loads(r["args"])} for r in rows
    ]


def battle_state(store: Store) -> dict[str, Any]:
    """The trainer's last published battle state ({} before the first battle)."""
    return store.get_state("battle", {}) or {}
