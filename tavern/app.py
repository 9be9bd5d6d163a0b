"""The Tavern's app factory: Flask + Flask-SocketIO, a pages blueprint and an /api blueprint.

`create_app(realm)` builds an app bound to one realm (config, home, store). Extensions are created
at module level and bound here (the Flask pattern), so tests can build many apps side by side.
Nothing starts at import time; the relay starts when `start_relay=True` (the server does that in
its worker) or on the first Socket.IO connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room

from tavern.errors import register_error_handlers
from tavern.relay import ROOM, Relay
from watchtower import metrics_export

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.tavern")

# threading mode: simple-websocket serves WebSockets under gunicorn's threaded worker (tavern/server.py).
socketio = SocketIO(async_mode="threading")


def create_app(
    realm: Realm, *, bind: str | None = None, start_relay: bool = False, testing: bool = False
) -> Flask:
    from tavern.api import api
    from tavern.views import pages

    app = Flask(__name__)
    cfg = realm.config
    app.config.update(
        REALM=realm,
        TAVERN_BIND=bind or cfg.bind,
        TESTING=testing,
        # Uploads are streamed to disk with our own limit check; this is the hard ceiling.
        MAX_CONTENT_LENGTH=(cfg.tavern.max_upload_mb + 1) * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    realm.ensure()
    register_error_handlers(app)
    app.register_blueprint(pages)
    app.register_blueprint(api)
    socketio.init_app(app)
    relay = Relay(socketio, realm.events, cfg.tavern.relay_interval_s)
    app.extensions["tavern.relay"] = relay
    # GET /metrics: the realm's numbers for Prometheus, plus the relay's lag (watchtower.metrics_export).
    metrics_export.mount(app, "tavern", realm=realm, collectors=[metrics_export.RelayCollector(relay)])
    if start_relay:
        relay.start()

    @app.teardown_appcontext
    def _close_db(_exc):
        # One connection per thread: a finished request thread must not leave its connection open.
        realm.store.close()

    return app


@socketio.on("connect")
def on_connect(auth=None):
    from flask import current_app

    join_room(ROOM)
    relay: Relay = current_app.extensions["tavern.relay"]
    if not current_app.config["TESTING"]:
        relay.start()
    emit("hello", {"last_event_id": current_app.config["REALM"].events.last_id(), "sid": request.sid})


@socketio.on("catch_up")
def on_catch_up(data=None):
    """A client asks for the events it missed; answered to that client only."""
    from flask import current_app

    since = int((data or {}).get("since") or 0)
    kinds = (data or {}).get("kinds") or None
    evs = current_app.config["REALM"].events.since(since, kinds=kinds, limit=1000)
    return [e.to_dict() for e in evs]


@socketio.on("disconnect")
def on_disconnect(*_args):
    log.debug("client %s left", request.sid)
