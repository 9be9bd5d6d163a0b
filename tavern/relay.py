"""The live relay: one tail of the event log, pushed to every connected browser.

One background task per Tavern process polls `EventLog.since(last_id)` and emits each batch once
to the `realm` room, so the cost of a new event is one SQLite read however many clients listen.
The trainer never waits on the relay: they are separate processes, and WAL mode lets this reader
run beside the trainer's writes without blocking them.

Clients never rely on the push alone: a page starts from GET /api/state, catches up with
GET /api/events?since=ID (or the `catch_up` socket event) and de-duplicates by event id, so a
reload, a reconnect or a Tavern restart loses nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask_socketio import SocketIO

from vault.events import EventLog

log = logging.getLogger("realm.tavern.relay")

ROOM = "realm"
BATCH = 500


class Relay:
    def __init__(self, socketio: SocketIO, events: EventLog, interval_s: float):
        self.socketio = socketio
        self.events = events
        self.interval_s = interval_s
        self.last_id: int | None = None
        self.stop_event = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    def poll_once(self) -> list[dict[str, Any]]:
        """Push every event newer than the last one pushed; returns what was pushed."""
        if self.last_id is None:
            # Start at the head: older events reach a page through the snapshot and catch-up.
            self.last_id = self.events.last_id()
            return []
        pushed: list[dict[str, Any]] = []
        while True:
            batch = self.events.since(self.last_id, limit=BATCH)
            if not batch:
                break
            payload = [e.to_dict() for e in batch]
            self.socketio.emit("events", payload, to=ROOM)
            self.last_id = batch[-1].id
            pushed += payload
            if len(batch) < BATCH:
                break
        return pushed

    def run(self) -> None:
        log.info("relay tailing the event log every %.3fs", self.interval_s)
        while not self.stop_event.is_set():
            try:
                self.poll_once()
            except Exception:  # a locked or briefly missing database must not kill the relay
                log.exception("relay poll failed; retrying")
                self.socketio.sleep(1.0)
            self.socketio.sleep(self.interval_s)
        self.events.store.close()

    def start(self) -> None:
        """Start the background task once per process (safe to call from every connect)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self.socketio.start_background_task(self.run)

    def stop(self) -> None:
        self.stop_event.set()
