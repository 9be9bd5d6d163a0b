"""The quest board: quests by column, each with its path and (when refused) its error detail.

The arena owns the quests table and the queue folders; this read model takes the quests through
`arena.queue.QuestQueue.list` and "what waits in the inbox" through intake's one rule
(`arena.intake.inbox.waiting_files`), and reads a refused quest's `FILE.error.json` for its detail.
Must not move or change a quest: queue changes go through `QuestQueue` (the Tavern's quest routes,
`realm quest ...`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from arena.intake.inbox import waiting_files
from arena.queue import QuestQueue

if TYPE_CHECKING:
    from sentinels.realm import Realm

BOARD = ("processing", "queued", "completed", "failed", "skipped")
# Finished columns show the newest this many quests (the page scrolls; the CLI lists the rest).
FINISHED_SHOWN = 100


def _error_detail(realm: Realm, error_path: str | None) -> dict[str, Any] | None:
    if not error_path:
        return None
    try:
        return orjson.loads((realm.home.root / error_path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def quest_dict(realm: Realm, quest: Any) -> dict[str, Any]:
    """A quest as JSON: its row, its path relative to the home, and its error file when refused."""
    d = quest.to_dict()
    d["path"] = str(quest.path.relative_to(realm.home.root)) if quest.path else None
    if quest.status in ("failed", "cancelled", "retried"):
        d["error"] = _error_detail(realm, quest.error_path)
    return d


def board(realm: Realm, queue: QuestQueue | None = None, name: str | None = None) -> dict[str, Any]:
    """{"columns": {column: [quest...]}, "inbox": [file names waiting for intake]}."""
    queue = queue or QuestQueue(realm.home, realm.store, realm.events)
    quests = queue.list(limit=2000)
    if name:
        quests = [q for q in quests if q.name == name]
    columns: dict[str, list] = {c: [] for c in BOARD}
    for q in quests:
        col = "failed" if q.status in ("cancelled", "retried") else q.status
        if col in columns:
            columns[col].append(quest_dict(realm, q))
    for col in ("completed", "failed", "skipped"):
        columns[col].sort(key=lambda q: q.get("finished_at") or "", reverse=True)
        columns[col] = columns[col][:FINISHED_SHOWN]
    inbox = sorted(p.name for p in waiting_files(realm.home.inbox))
    return {"columns": columns, "inbox": inbox}
