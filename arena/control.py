"""Battle control: pause, resume, stop and skip, through the state store.

The CLI, the Tavern and any later API send commands with `send()`; the trainer takes them with
`take_pending()` between steps. Going through the database means every caller shares one path and
a command sent while the trainer is busy is not lost.

A command is meant for the arena that runs when it is sent. One still pending when an arena starts
was sent while none ran (a second `stop` after the first had stopped it), and the new arena expires
it (`expire_pending`) instead of obeying it: otherwise `realm resume` would start an arena that
takes the stale `stop` and exits again at once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from vault.events import EventLog
from vault.store import Store

if TYPE_CHECKING:
    from sentinels.realm import Realm

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


def pending(store: Store) -> list[dict[str, Any]]:
    """Commands sent and not yet taken by the trainer, oldest first (a read: nothing is claimed)."""
    rows = store.query("SELECT id, ts, action, args FROM commands WHERE status = 'pending' ORDER BY id")
    return [{**r, "args": orjson.loads(r["args"] or "{}")} for r in rows]


def request(realm: Realm, action: str) -> tuple[int, bool]:
    """Send a command as every front end should (the CLI, the Tavern): (command id, woke).

    A `resume` while no arena runs under a running guardian also wakes the guardian (SIGUSR1), which
    starts the arena a `stop` left stopped; `woke` says it did."""
    from sentinels.guardian import wake
    from sentinels.locks import is_held

    cid = send(realm.store, realm.events, action)
    run = realm.home.run
    woke = action == "resume" and not is_held(run, "arena") and wake(run) is not None
    return cid, woke


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


def expire_pending(store: Store, events: EventLog, before: float) -> list[int]:
    """Mark the commands still pending that were sent before `before` as expired; their ids."""
    with store.tx() as conn:
        rows = conn.execute(
            "SELECT id FROM commands WHERE status = 'pending' AND ts < ? ORDER BY id", (before,)
        ).fetchall()
        ids = [int(r["id"]) for r in rows]
        if ids:
            conn.execute(
                f"UPDATE commands SET status = 'expired', done_at = ? WHERE id IN ({','.join('?' * len(ids))})",
                [time.time(), *ids],
            )
    if ids:
        events.emit("control.expired", command_ids=ids)
    return ids


def battle_state(store: Store) -> dict[str, Any]:
    """The trainer's last published battle state ({} before the first battle)."""
    return store.get_state("battle", {}) or {}
