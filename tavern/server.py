"""The Tavern's production server: gunicorn, one process, threaded worker, WebSockets via simple-websocket.

Why this server: Flask-SocketIO's `threading` mode with simple-websocket runs real WebSockets on
gunicorn's `gthread` worker (the socket is taken over from gunicorn for the WebSocket's lifetime).
gunicorn is a long-running production server with a master that restarts a dead worker and turns
SIGTERM into a graceful stop. gevent would also work but monkey-patches the process, and sqlite3
calls would block its hub; eventlet is deprecated; the Werkzeug server is for development only.

Costs: every open WebSocket holds one worker thread (tavern.threads, 200 by default), and there is
exactly one worker because Socket.IO sessions live in that process's memory (several workers would
need sticky sessions and a message queue). The relay starts in the worker after the fork, never in
the master, because threads do not survive fork().
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.tavern.server")


class TavernServer(BaseApplication):
    def __init__(self, realm: Realm, host: str, port: int, threads: int | None = None):
        self.realm, self.host, self.port = realm, host, port
        self.threads = threads or realm.config.tavern.threads
        super().__init__()

    def load_config(self) -> None:
        settings = {
            "bind": f"{self.host}:{self.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": self.threads,
            # Open WebSockets would keep a graceful stop waiting for the full timeout; browsers
            # reconnect by themselves, so a short grace is enough.
            "graceful_timeout": 3,
            "timeout": 60,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "realm-tavern",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in the worker (no preload): the app, its database connections and the relay
        # thread all belong to the process that serves requests.
        from tavern.app import create_app

        return create_app(self.realm, bind=self.host, start_relay=True)


def serve(realm: Realm, host: str, port: int, threads: int | None = None) -> None:
    log.info("Tavern on http://%s:%s/ (gunicorn gthread, %s threads)", host, port, threads or "default")
    TavernServer(realm, host, port, threads).run()
