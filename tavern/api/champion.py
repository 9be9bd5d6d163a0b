"""GET /api/champion: the champion board (watchtower.champion.board), curl-able.

    curl -s http://127.0.0.1:8888/api/champion?limit=10

Query: `limit` (checkpoints listed, 1..10000, default 100; the ranking always covers every live
checkpoint), `history` (alias moves listed, 1..500, default 20). Read-only: the champion is moved by
the guild's rule (guild/champion.py) or by hand through the vault (POST /api/vault/promote).
"""

from __future__ import annotations

from flask import jsonify, request

from tavern.api import api, realm
from tavern.errors import ApiError
from watchtower.champion import board


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {value}")
    return value


@api.get("/api/champion")
def champion_board():
    limit = _int_arg("limit", 100, 1, 10_000)
    history = _int_arg("history", 20, 1, 500)
    return jsonify(board(realm().store, limit=limit, history=history))
