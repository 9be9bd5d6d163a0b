"""Game reads and battle control: state, events, metrics, skills, compare, control, config, health."""

from __future__ import annotations

import time

from flask import jsonify, request

from arena import control as arena_control
from arena.control import ControlError, battle_state
from tavern import armory
from tavern.api import api, realm
from tavern.auth import auth_status, mutating
from tavern.errors import ApiError
from tavern.game import snapshot
from tavern.skills import skill_cards
from watchtower.metrics import loss_series
from watchtower.skills import skill_evals
from watchtower.status import pending_commands

STARTED = time.time()


def _int_arg(name: str, default: int, lo: int = 0, hi: int = 10**12) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"query parameter {name} must be between {lo} and {hi}, got {value}")
    return value


@api.get("/health")
def health():
    r = realm()
    return jsonify(
        status="ok",
        service="tavern",
        uptime_s=round(time.time() - STARTED, 1),
        last_event_id=r.events.last_id(),
        home=str(r.home.root),
    )


_HEALTH_TTL_S = 10.0  # the top bar polls every 15 s; one quick_check per 10 s serves every tab
_health_cache: dict = {}


@api.get("/api/health")
def realm_health():
    """`realm health --json` for the top bar (sentinels.health), cached for a few seconds. Always 200
    with `ok` in the body: a failing check is news about the realm, not an error of this request (and
    a 503 would be a console error on every page of a Tavern running alone)."""
    import threading

    from sentinels.health import run_checks

    lock = _health_cache.setdefault("lock", threading.Lock())
    with lock:
        now = time.monotonic()
        if now - _health_cache.get("at", -_HEALTH_TTL_S) >= _HEALTH_TTL_S:
            _health_cache["report"], _health_cache["at"] = run_checks(realm()), now
        report = _health_cache["report"]
    return jsonify(report)


@api.get("/api/state")
def state():
    return jsonify(snapshot(realm(), auth_status()))


@api.get("/api/events")
def events():
    since = _int_arg("since", 0)
    limit = _int_arg("limit", 1000, 1, 5000)
    kinds = [k for k in request.args.get("kinds", "").split(",") if k.strip()] or None
    evs = realm().events.since(since, kinds=kinds, limit=limit)
    out = [e.to_dict() for e in evs]
    return jsonify(events=out, last_id=out[-1]["id"] if out else since, more=len(out) == limit)


@api.get("/api/metrics")
def metrics():
    axis = request.args.get("axis", "step")
    if axis not in ("step", "time"):
        raise ApiError(400, f"axis must be step or time, got {axis!r}")
    return jsonify(loss_series(realm().store, _int_arg("max_points", 2000, 4, 200_000), axis))


@api.get("/api/skills")
def skills():
    r = realm()
    return jsonify(skills=skill_cards(r.store, r.config.guild, r.config.hero))


@api.get("/api/skills/<skill>/evals")
def evals(skill: str):
    r = realm()
    cards = {c["id"]: c for c in skill_cards(r.store, r.config.guild, r.config.hero)}
    if skill.lower() not in cards:
        raise ApiError(404, f"no skill {skill!r}; known skills: {', '.join(cards)}")
    return jsonify(
        skill=cards[skill.lower()], evals=skill_evals(r.store, skill, _int_arg("limit", 200, 1, 5000))
    )


@api.get("/api/compare")
def compare():
    """?a=REF&b=REF (anything the vault resolves), optional &skill=bin,sy and &score=0 (stored evals only)."""
    from watchtower.compare import CompareError
    from watchtower.compare import compare as read_compare

    a, b = request.args.get("a", "").strip(), request.args.get("b", "").strip()
    if not a or not b:
        raise ApiError(
            400, "name two checkpoints: /api/compare?a=REF&b=REF (a step, an alias, latest, a name)"
        )
    skills = [s for s in request.args.get("skill", "").split(",") if s.strip()] or None
    score = request.args.get("score", "1") not in ("0", "false", "no")
    try:
        return jsonify(read_compare(realm(), a, b, skills=skills, score_missing=score))
    except CompareError as exc:
        raise ApiError(exc.status, str(exc)) from exc


@api.post("/api/control")
@mutating
def control():
    body = request.get_json(silent=True) or {}
    action = body.get("action")
    r = realm()
    try:
        # request(), not send(): a resume also wakes an arena that a stop left stopped.
        cid, woke = arena_control.request(r, str(action))
    except ControlError as exc:
        raise ApiError(400, str(exc)) from exc
    # The trainer takes the command between steps; until then it shows as requested.
    return jsonify(
        command_id=cid,
        action=action,
        status="requested",
        woke=woke,
        battle=battle_state(r.store),
        pending_commands=pending_commands(r),
    ), 202


@api.get("/api/config")
def get_config():
    return jsonify(armory.read(realm()))


@api.put("/api/config")
@mutating
def put_config():
    body = request.get_json(silent=True)
    return jsonify(armory.write(realm(), body))
