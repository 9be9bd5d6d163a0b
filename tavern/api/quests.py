"""Quest board routes: list, upload into the inbox, retry, priority, cancel; lineage statistics."""

from __future__ import annotations

from flask import jsonify, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from arena.queue import QuestQueue, QueueError
from tavern.api import api, realm
from tavern.auth import mutating
from tavern.errors import ApiError
from tavern.quests import check_raw_type, save_upload, too_large
from vault.home import PRIORITIES
from watchtower.board import board, quest_dict
from watchtower.lineage import lineage_stats


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


@api.get("/api/lineage")
def lineage():
    """Per generator, validator and source: quests and examples accepted and refused, top reasons."""
    return jsonify(lineage_stats(realm().store))


@api.get("/api/quests/<int:quest_id>")
def get_quest(quest_id: int):
    return jsonify(quest_dict(realm(), _quest_or_404(quest_id)))


@api.post("/api/quests")
@mutating
def upload_quest():
    """Multipart field `file` (the page), or any other body as the file's raw bytes with
    ?name=FILE.jsonl (curl --data-binary). Only multipart is parsed as a form: touching
    `request.form` on curl's default form-urlencoded body would consume it as form fields and
    leave an empty file."""
    try:
        if request.mimetype == "multipart/form-data":
            if "file" not in request.files:
                raise ApiError(400, "a multipart upload needs the field 'file'")
            f = request.files["file"]
            stream, name = f.stream, f.filename or "quest.jsonl"
            priority = request.form.get("priority") or request.args.get("priority")
        else:
            name, priority = request.args.get("name"), request.args.get("priority")
            if not name:
                raise ApiError(400, "send a multipart field 'file', or a raw body with ?name=FILE.jsonl")
            check_raw_type(request.mimetype)
            stream = request.stream
    except RequestEntityTooLarge as exc:
        # Werkzeug refuses a body over MAX_CONTENT_LENGTH (multipart, or a declared length).
        raise too_large(realm()) from exc
    if priority and priority not in PRIORITIES:
        raise ApiError(400, f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
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
