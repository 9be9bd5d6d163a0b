"""The realm home: the folder layout every room shares, and its initialisation.

inbox/                       drop zone for quests
queue/{high,normal,low}/     queued quests, FIFO inside each priority
queue/processing/            the quest in battle
queue/failed/                refused or cancelled quests, each with FILE.error.json
queue/recently_completed/    finished quests
models/                      checkpoints
logs/                        rotating logs
run/                         pid and lock files
realm.db                     the state store
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vault.store import DB_NAME, Store

PRIORITIES = ("high", "normal", "low")
QUEUE_DIRS = (*PRIORITIES, "processing", "failed", "recently_completed")


@dataclass(frozen=True)
class RealmHome:
    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    def queue_dir(self, name: str) -> Path:
        if name not in QUEUE_DIRS:
            raise ValueError(f"unknown queue folder {name!r}; expected one of {', '.join(QUEUE_DIRS)}")
        return self.queue / name

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    def layout(self) -> list[Path]:
        return [self.inbox, *(self.queue_dir(d) for d in QUEUE_DIRS), self.models, self.logs, self.run]

    def init(self) -> list[str]:
        """Create folders and apply migrations; idempotent. Returns the migrations applied now."""
        for d in self.layout():
            d.mkdir(parents=True, exist_ok=True)
        store = Store(self.db_path)
        try:
            return store.migrate()
        finally:
            store.close()

    def store(self) -> Store:
        return Store(self.db_path)
