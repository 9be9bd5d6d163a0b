"""The Oracle's server: gunicorn, one process, threaded worker (as the Tavern's, tavern/server.py).

One worker because the loaded checkpoints live in that process's memory; threads because every open
stream holds one while it waits for tokens, and generation itself runs in the engine's one thread.
The app (and with it torch, the model manager and the batcher thread) is built in the worker after
the fork, never in the master, because threads do not survive fork().
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gunicorn.app.base import BaseApplication

log = logging.getLogger("realm.oracle.server")

THREADS = 64  # concurrent requests (open streams included); generation is batched behind them


class OracleServer(BaseApplication):
    def __init__(self, build_app: Callable, host: str, port: int):
        self.build_app, self.host, self.port = build_app, host, port
        super().__init__()

    def load_config(self) -> None:
        settings = {
            "bind": f"{self.host}:{self.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": THREADS,
            # Streams end within a few seconds of a stop: their generators are closed, their jobs cancelled.
            "graceful_timeout": 5,
            "timeout": 120,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "realm-oracle",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return self.build_app()


def serve(build_app: Callable, host: str, port: int) -> None:
    log.info("Oracle on http://%s:%s/v1 (gunicorn gthread, %d threads)", host, port, THREADS)
    OracleServer(build_app, host, port).run()
