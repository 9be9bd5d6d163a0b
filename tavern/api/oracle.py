"""The Tavern's Oracle routes: the seed's /oracle/* endpoints, proxied to an Oracle host, and what the
Oracle room needs from this realm.

The Oracle (tavern/oracle/, `realm oracle`) is its own process, often on another machine; the Tavern
finds it only through the hosts registry (`sentinels.hosts`: every host offering the `oracle`
service) and talks to it over its HTTP API, so a room page never needs to know where it runs.

Proxied (a `host` field or `?host=` picks the host; default: the registry's choice):
- GET  /oracle/hosts    the Oracle hosts in the registry (no network: the page's host picker);
- GET  /oracle/status   each host's own /oracle/status (what is loaded, its memory, last use), or why
                        it is unreachable;
- POST /oracle/load     preload a checkpoint (`model`, `checkpoint` or `step`), the Oracle's /oracle/load;
- POST /oracle/unload   the Oracle's /oracle/unload;
- POST /oracle/chat     `{"message"}` or `{"messages"}` (+ `model`/`checkpoint`/`step`, sampling fields,
                        `max_think_tokens`) to the Oracle's /v1/chat/completions. With `"stream": true`
                        the Oracle's SSE bytes pass through as they arrive; a browser that goes away
                        closes the upstream connection, which stops the generation there.

From this realm (no Oracle needed): GET /oracle/checkpoints (the ledger, for the checkpoint picker),
GET /oracle/problem (an item of the guild's eval set at a skill and level), POST /oracle/score (the
skill's own scorer on answers to that item).

Writes (load, unload, chat) follow the Tavern's token rule (tavern/auth.py): chat is no realm change,
but it spends the Oracle host's compute, and the Tavern must not open a loopback-only Oracle to the
network. Errors are the Tavern's JSON errors; an Oracle error keeps its status and carries the
Oracle's own error object as `oracle`.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from tavern.api import realm
from tavern.auth import TOKEN_HEADER, mutating
from tavern.errors import ApiError, error_response

log = logging.getLogger("realm.tavern.oracle")

oracle_api = Blueprint("oracle_api", __name__, url_prefix="/oracle")

SERVICE = "oracle"
CONNECT_TIMEOUT_S = 3.0
STATUS_TIMEOUT_S = 3.0
# A load may build a model and fetch a checkpoint from another zone first; a non-streamed chat waits
# for its whole answer. Both are bounded by the Oracle's own caps (max_tokens, prompt length).
LONG_TIMEOUT_S = 600.0
# Sampling and extension fields passed to the Oracle as given (it validates and caps them).
CHAT_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "ignore_eos",
    "max_think_tokens",
    "stream_options",
    "keep_alive",
)
CHECKPOINT_LIMIT = 500


@oracle_api.errorhandler(Exception)
def _json_errors(exc: Exception):
    """These are API routes: a caller gets the Tavern's JSON error shape, whatever went wrong (the
    app's own handlers give JSON only under /api/)."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, **exc.extra)
    if isinstance(exc, HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


# ---- finding the Oracle ------------------------------------------------------------------------
def _registry():
    from sentinels.hosts import HostsError, load_hosts

    try:
        return load_hosts(realm().config)
    except HostsError as exc:  # a bad hosts.yaml: say which file and key, as every config error does
        raise ApiError(500, f"the hosts registry cannot be read: {exc}") from exc


def _host_dict(host, default: str | None) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "roles": list(host.roles),
        "url": host.url(SERVICE),
        "default": host.name == default,
    }


def oracle_host(name: str | None) -> tuple[str, str]:
    """(host name, base URL) of the Oracle on host `name`, or where the registry says it runs."""
    from sentinels.hosts import ServiceNotFound

    hosts = _registry()
    try:
        host = hosts.service_host(SERVICE, name or None)
    except ServiceNotFound as exc:
        offering = [h.name for h in hosts.hosts if SERVICE in h.services]
        raise ApiError(404, str(exc), hosts=offering) from exc
    return host.name, host.url(SERVICE)


def _requested_host() -> str | None:
    body = request.get_json(silent=True) if request.is_json else None
    return (body or {}).get("host") or request.args.get("host") or None


# ---- talking to it -----------------------------------------------------------------------------
def _headers() -> dict[str, str]:
    # The Oracle's token (oracle.token) when this realm's config holds it: the Tavern has already
    # applied its own token rule to the caller. Else the caller's token travels on unchanged.
    token = realm().config.oracle.token or request.headers.get(TOKEN_HEADER)
    return {TOKEN_HEADER: token} if token else {}


def _call(method: str, url: str, host: str, *, timeout: float, **kwargs: Any) -> requests.Response:
    try:
        return requests.request(
            method, url, headers=_headers(), timeout=(CONNECT_TIMEOUT_S, timeout), **kwargs
        )
    except requests.RequestException as exc:
        raise ApiError(502, f"the Oracle on host {host!r} ({url}) is unreachable: {exc}", host=host) from exc


def _raise_for(resp: requests.Response, host: str) -> None:
    """An Oracle error as the Tavern's error: its status, its message, its error object as `oracle`."""
    if resp.ok:
        return
    try:
        body = resp.json()
    except ValueError:
        body = {"message": resp.text[:500]}
    err = body.get("error", body) if isinstance(body, dict) else {"message": str(body)}
    message = err.get("message") if isinstance(err, dict) else str(err)
    extra: dict[str, Any] = {"host": host, "oracle": err}
    if resp.headers.get("Retry-After"):
        extra["retry_after"] = resp.headers["Retry-After"]
    raise ApiError(resp.status_code, f"Oracle on {host!r}: {message or resp.reason}", **extra)


def _json(resp: requests.Response, host: str) -> Any:
    _raise_for(resp, host)
    try:
        return resp.json()
    except ValueError as exc:
        raise ApiError(
            502, f"the Oracle on {host!r} answered non-JSON: {resp.text[:200]!r}", host=host
        ) from exc


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def model_ref(body: dict[str, Any]) -> str | None:
    """The model id to ask the Oracle for: `model` (any id the Oracle takes), `checkpoint` (a
    canonical name), or `step` (the ledger's checkpoint at that step). None: none was named."""
    for key in ("model", "checkpoint"):
        if body.get(key):
            return str(body[key])
    if body.get("step") not in (None, ""):
        try:
            step = int(body["step"])
        except (TypeError, ValueError):
            raise ApiError(400, f"step must be an integer, got {body['step']!r}") from None
        row = _ledger().get(step)
        if row is None:
            raise ApiError(404, f"no checkpoint at step {step} in this realm's ledger")
        return str(row["name"])
    return None


def default_model() -> str:
    """Who answers when no checkpoint is named: the champion, else the newest (the glossary's rule)."""
    hero = realm().config.hero.name.lower()
    return f"{hero}@champion" if _ledger().alias("champion") else f"{hero}@latest"


# ---- routes: the seed's endpoints ----------------------------------------------------------------
@oracle_api.get("/hosts")
def hosts():
    """The hosts that offer the Oracle, from the registry; `default` is the one used without `host`."""
    from sentinels.hosts import ServiceNotFound

    reg = _registry()
    try:
        default = reg.service_host(SERVICE).name
    except ServiceNotFound:
        default = None
    offering = [_host_dict(h, default) for h in reg.hosts if SERVICE in h.services]
    return jsonify(hosts=offering, default=default, source=reg.source)


def _probe(name: str, url: str) -> dict[str, Any]:
    try:
        resp = requests.get(url + "/oracle/status", timeout=(CONNECT_TIMEOUT_S, STATUS_TIMEOUT_S))
        resp.raise_for_status()
        return {"host": name, "url": url, "up": True, "status": resp.json()}
    except (requests.RequestException, ValueError) as exc:
        return {"host": name, "url": url, "up": False, "error": str(exc)}


@oracle_api.get("/status")
def status():
    """What is loaded where: each Oracle host's /oracle/status (or `?host=` for one)."""
    name = request.args.get("host")
    if name:
        targets = [oracle_host(name)]
    else:
        reg = _registry()
        targets = [(h.name, h.url(SERVICE)) for h in reg.hosts if SERVICE in h.services]
    # Probed side by side: an unreachable host costs its connect timeout once, not once per host.
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(targets)))) as pool:
        answers = list(pool.map(lambda t: _probe(*t), targets))
    return jsonify(hosts=answers, checked_at=time.time())


@oracle_api.post("/load")
@mutating
def load():
    body = _body()
    ref = model_ref(body)
    if ref is None:
        raise ApiError(400, "name the checkpoint: model, checkpoint or step")
    name, url = oracle_host(_requested_host())
    payload = {"model": ref, **({"keep_alive": body["keep_alive"]} if "keep_alive" in body else {})}
    resp = _call("POST", url + "/oracle/load", name, json=payload, timeout=LONG_TIMEOUT_S)
    return jsonify({**_json(resp, name), "host": name})


@oracle_api.post("/unload")
@mutating
def unload():
    body = _body()
    name, url = oracle_host(_requested_host())
    ref = model_ref(body)
    payload = {"model": ref} if ref else {}
    resp = _call("POST", url + "/oracle/unload", name, json=payload, timeout=LONG_TIMEOUT_S)
    return jsonify({**_json(resp, name), "host": name})


def chat_payload(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat request for a Tavern chat body (`message` is one user turn)."""
    messages = body.get("messages")
    if messages is None:
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(400, "send a non-empty message, or messages: [{role, content}, ...]")
        messages = [{"role": "user", "content": message}]
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list of {role, content}")
    payload: dict[str, Any] = {
        "model": model_ref(body) or default_model(),
        "messages": messages,
        "stream": bool(body.get("stream")),
    }
    payload.update({k: body[k] for k in CHAT_FIELDS if body.get(k) is not None})
    return payload


@oracle_api.post("/chat")
@mutating
def chat():
    body = _body()
    payload = chat_payload(body)
    name, url = oracle_host(_requested_host())
    endpoint = url + "/v1/chat/completions"
    if not payload["stream"]:
        resp = _call("POST", endpoint, name, json=payload, timeout=LONG_TIMEOUT_S)
        answer = _json(resp, name)
        choice = (answer.get("choices") or [{}])[0]
        reply = (choice.get("message") or {}).get("content", "")
        return jsonify({**answer, "reply": reply, "host": name})
    upstream = _call("POST", endpoint, name, json=payload, timeout=LONG_TIMEOUT_S, stream=True)
    try:
        _raise_for(upstream, name)
    except ApiError:
        upstream.close()
        raise

    def relay():
        # Bytes go on as they arrive (chunk_size=None). When the browser leaves, the server closes this
        # generator at its next write; closing the upstream response then tells the Oracle to stop.
        try:
            yield from upstream.iter_content(chunk_size=None)
        except requests.RequestException as exc:
            log.warning("oracle stream from %s broke: %s", name, exc)
        finally:
            upstream.close()

    return Response(
        relay(),
        status=upstream.status_code,
        content_type=upstream.headers.get("Content-Type", "text/event-stream"),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Oracle-Host": name},
    )


# ---- routes: this realm's side of the room ---------------------------------------------------------
def _ledger():
    from tavern.api.vault import keeper

    return keeper().ledger


@oracle_api.get("/checkpoints")
def checkpoints():
    """The checkpoint picker: live ledger rows, newest first, with loss, skill level, age, aliases.
    `default` is the champion when there is one, else the newest."""
    from vault.ledger import created_ts

    ledger = _ledger()
    now = time.time()
    rows = []
    for r in ledger.list(limit=CHECKPOINT_LIMIT):
        created = created_ts(r)
        rows.append(
            {
                "model": r["name"],
                "name": r["name"],
                "step": r["step"],
                "train_loss": r.get("train_loss"),
                "val_loss": r.get("val_loss"),
                "skill_name": r.get("skill_name"),
                "skill_level": r.get("skill_level"),
                "created_at": created,
                "age_s": None if created is None else max(0.0, now - created),
                "aliases": r.get("aliases", []),
            }
        )
    champion = ledger.get("champion") if ledger.alias("champion") else None
    default = (
        champion["name"] if champion and not champion["deleted"] else (rows[0]["model"] if rows else None)
    )
    return jsonify(checkpoints=rows, default=default, hero=realm().config.hero.name)


def _guild():
    from guild.guild import Guild

    return Guild.from_realm(realm())


def _eval_items(guild, skill: str, level: int) -> list[dict[str, Any]]:
    if skill not in guild.cfg.skills:
        raise ApiError(404, f"no active skill {skill!r}; skills: {', '.join(guild.cfg.skills)}")
    try:
        return guild.eval_set(skill, level)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be an integer, got {value!r}") from None


@oracle_api.get("/problem")
def problem():
    """One item of the guild's eval set at `skill` and `level` (`index`, else drawn at random)."""
    skill = (request.args.get("skill") or "").lower()
    level = _int(request.args.get("level", 1), "level")
    items = _eval_items(_guild(), skill, level)
    raw = request.args.get("index")
    index = random.randrange(len(items)) if raw in (None, "") else _int(raw, "index")
    if not 0 <= index < len(items):
        raise ApiError(400, f"index must be in 0..{len(items) - 1}, got {index}")
    item = items[index]
    return jsonify(
        skill=skill,
        level=level,
        index=index,
        count=len(items),
        prompt=item["prompt"],
        expected=item["expected"],
    )


@oracle_api.post("/score")
def score():
    """The skill's own verdict on `answers` to the eval item (`skill`, `level`, `index`)."""
    body = _body()
    skill = str(body.get("skill") or "").lower()
    level = _int(body.get("level"), "level")
    index = _int(body.get("index"), "index")
    answers = body.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ApiError(400, "answers must be a list of strings")
    guild = _guild()
    items = _eval_items(guild, skill, level)
    if not 0 <= index < len(items):
        raise ApiError(400, f"index must be in 0..{len(items) - 1}, got {index}")
    item = items[index]
    client = guild.client(skill)
    verdicts = [bool(client.score(item["prompt"], item["expected"], a)) for a in answers]
    return jsonify(skill=skill, level=level, index=index, expected=item["expected"], correct=verdicts)
