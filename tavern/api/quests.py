"""Quest board routes: list, upload into the inbox, retry, priority, cancel."""

from __future__ import annotations

from flask import jsonify, request, url_for

from arena.queue import QuestQueue, QueueError
from tavern.api import api, realm
from tavern.auth import mutating
from tavern.errors import ApiError
from tavern.quests import board, quest_dict, save_upload
from vault.home import PRIORITIES


def _queue() -> QuestQueue:
    r = realm()
    return QuestQueue(r.home, r.store, r.events)


def _quest_or_404(quest_id: int):
    try:
        return _queue().get(quest_id)
    except QueueError as exc:
        raise ApiError(404, str(exc)) from exc


@api.get("/api/quests")
def list_quests():
    return jsonify(board(realm(), _queue(), name=request.args.get("name")))


@api.get("/api/quests/<int:quest_id>")
def get_quest(quest_id: int):
    return jsonify(quest_dict(realm(), _quest_or_404(quest_id)))


@api.post("/api/quests")
@mutating
def upload_quest():
    """Multipart field `file` (the page), or a raw body with ?name=FILE.jsonl (curl --data-binary)."""
    priority = request.form.get("priority") or request.args.get("priority")
    if priority and priority not in PRIORITIES:
        raise ApiError(400, f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
    if "file" in request.files:
        f = request.files["file"]
        stream, name = f.stream, f.filename or "quest.jsonl"
    elif request.args.get("name"):
        stream, name = request.stream, request.args["name"]
    else:
        raise ApiError(400, "send a multipart field 'file', or a raw body with ?name=FILE.jsonl")
    result = save_upload(realm(), stream, name, priority)
    if "quest" in result:
        location = url_for("api.get_quest", quest_id=result["quest"]["id"])
    else:
        location = url_for("api.list_quests", name=result["name"])
    return jsonify(result), 201, {"Location": location}


@api.post("/api/quests/<int:quest_id>/<action>")
@mutating
def quest_action(quest_id: int, action: str):
    queue = _queue()
    _quest_or_404(quest_id)
    body = request.get_json(silent=True) or {}
    try:
        if action == "retry":
            path = queue.retry(quest_id)
            return jsonify(quest_id=quest_id, status="retried", inbox_path=f"inbox/{path.name}")
        if action == "cancel":
            quest = queue.cancel(quest_id)
        elif action == "priority":
            quest = queue.set_priority(quest_id, str(body.get("priority") or request.args.get("priority")))
        else:
            raise ApiError(404, f"unknown quest action {action!r}; use retry, priority or cancel")
    except QueueError as exc:
        raise ApiError(409, str(exc)) from exc
    return jsonify(quest_dict(realm(), quest))
