"""Quest board reads and the upload path into the inbox.

Uploads go through the arena's intake (`Intake.accept_upload`): the same path as a file dropped
into `inbox/`, with its safe-name rule, size limit (tavern.max_upload_mb) and checks, so the page
gets the quest id, or the rejection reason, in the same response. The Tavern never moves queue files
itself: queue changes go through `arena.queue.QuestQueue`.
"""

from __future__ import annotations

import logging
from typing import IO, Any

import orjson

from arena.queue import QuestQueue, QueueError
from tavern.errors import ApiError

log = logging.getLogger("realm.tavern.quests")

BOARD = ("processing", "queued", "completed", "failed", "skipped")


def _error_detail(realm: Any, error_path: str | None) -> dict[str, Any] | None:
    if not error_path:
        return None
    path = realm.home.root / error_path
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def quest_dict(realm: Any, quest: Any) -> dict[str, Any]:
    d = quest.to_dict()
    d["path"] = str(quest.path.relative_to(realm.home.root)) if quest.path else None
    if quest.status in ("failed", "cancelled"):
        d["error"] = _error_detail(realm, quest.error_path)
    return d


def board(realm: Any, queue: QuestQueue, name: str | None = None) -> dict[str, Any]:
    quests = queue.list(limit=2000)
    if name:
        quests = [q for q in quests if q.name == name]
    columns: dict[str, list] = {c: [] for c in BOARD}
    for q in quests:
        col = "failed" if q.status == "cancelled" else q.status
        if col in columns:
            columns[col].append(quest_dict(realm, q))
    for col in ("completed", "failed", "skipped"):
        columns[col].sort(key=lambda q: q.get("finished_at") or "", reverse=True)
        columns[col] = columns[col][:100]
    inbox = sorted(p.name for p in realm.home.inbox.iterdir() if p.is_file() and not p.name.startswith("."))
    return {"columns": columns, "inbox": inbox}


def save_upload(realm: Any, stream: IO[bytes], filename: str, priority: str | None = None) -> dict[str, Any]:
    """Hand one upload to the arena's intake (safe name, size limit, checks); returns the quest."""
    from arena.intake.service import Intake, UploadError

    try:
        quest = Intake.for_realm(realm).accept_upload(filename, stream, priority)
    except UploadError as exc:
        raise ApiError(413 if "limit" in str(exc) else 400, str(exc)) from exc
    except QueueError as exc:
        raise ApiError(409, str(exc)) from exc
    log.info("upload %s -> quest %s (%s)", filename, quest.id, quest.status)
    return {"name": quest.name, "quest": quest_dict(realm, quest)}
