"""The VaultKeeper API (`realm vault serve [--port 8767]`): the keeper's functions as curl-able JSON.

`create_app(realm)` is a Flask app factory like the Tavern's; `serve()` runs it under gunicorn's
threaded worker, for the reasons tavern/server.py gives (a production server whose master restarts a
dead worker and turns SIGTERM into a graceful stop; no monkey-patching, so sqlite3 calls are plain
blocking calls on a thread). One worker: the API holds no per-process state worth sharing, and
threads serve concurrent reads (each thread keeps its own SQLite connection in `Store`).

Every route calls `vault.keeper.VaultKeeper` (catalog, ledger, zones, transfers) or, for
/api/training/*, the arena's functions (`arena.control`, `arena.queue.QuestQueue`,
`arena.reporting.read_hero`): this module holds no SQL and no rule of its own. The JSON shapes, with a
curl example each, are in docs/API.md (tests/test_vault_docs.py runs every example).

Errors are `{"error": {"message", "type", ...}}` with the status the typed error maps to
(`error_info`, which the Tavern's Vault room uses too): an unknown asset is 404 with the valid id forms
and close matches, an unknown route 404 with the endpoint list. Reads are open, except the bytes of
config assets, which may hold the token (`guard_bytes`); every mutation (POST, PUT, DELETE) passes
the Tavern's token rule (`tavern.auth.check_mutation`: `X-Realm-Token` equal to `tavern.token`,
unless bound to loopback with `tavern.open_on_loopback`). The server binds `bind` (127.0.0.1) by
default. Asset references resolve through the catalog and paths through the
zones' `safe_relpath`/`LocalZone.path`, so no id or path reaches outside a zone's root.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, stream_with_context
from werkzeug.exceptions import HTTPException

from vault import ids
from vault.errors import AliasError, AssetNotFound, LastCopyError, LedgerError, VaultError
from vault.keeper import VaultKeeper

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.vault.server")

SERVICE = "vault"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
# Asset kinds whose bytes may hold secrets (a home's realm.yaml holds tavern.token): their files and
# exports are served only under the token rule, like a mutation. Every other read is open.
GUARDED_KINDS = ("config",)
STARTED = time.time()

api = Blueprint("vault_api", __name__)


class BadRequest(VaultError):
    """A request the API cannot take as sent (a missing field, a bad number)."""


# ---- errors ---------------------------------------------------------------------------------------
def _status_table() -> list[tuple[type[BaseException], int]]:
    """Typed errors to HTTP statuses, most specific first (imports kept lazy: the arena's and the
    zones' modules load only when a route needs them)."""
    from arena.control import ControlError
    from vault.transfer import TransferError
    from vault.zones import (
        ChecksumMismatch,
        UnsafePath,
        ZoneAuthError,
        ZoneError,
        ZoneNotFound,
        ZoneUnavailable,
    )

    return [
        (AssetNotFound, 404),
        (ZoneNotFound, 404),
        (LastCopyError, 409),
        (TransferError, 409),
        (AliasError, 422),
        (LedgerError, 400),
        (BadRequest, 400),
        (UnsafePath, 400),
        (ZoneAuthError, 502),  # a zone refused us: the keeper's token for it is wrong
        (ChecksumMismatch, 502),
        (ZoneUnavailable, 503),
        (ZoneError, 400),
        (ControlError, 400),
        (VaultError, 400),
    ]


def error_info(exc: BaseException) -> tuple[int, dict[str, Any]] | None:
    """(status, body) for an error the vault raises on purpose, or None for anything else.

    The one mapping from typed errors to statuses: this API and the Tavern's Vault room use it."""
    from tavern.errors import ApiError

    if isinstance(exc, ApiError):  # the token rule (tavern/auth.py) raises these
        kind = {401: "Unauthorized", 403: "Forbidden"}.get(exc.status, "ApiError")
        return exc.status, {"message": exc.message, "type": kind, **exc.extra}
    for cls, status in _status_table():
        if isinstance(exc, cls):
            body: dict[str, Any] = {"message": str(exc), "type": type(exc).__name__}
            if isinstance(exc, AssetNotFound):
                body.update(ref=exc.ref, close=exc.close, valid_forms=ids.VALID_FORMS)
            return status, body
    return None


def _error(status: int, body: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(error=body), status


def _endpoints() -> list[str]:
    rules = sorted(current_app.url_map.iter_rules(), key=lambda r: r.rule)
    out = []
    for r in rules:
        if r.endpoint == "static":
            continue
        methods = sorted(m for m in (r.methods or ()) if m not in ("HEAD", "OPTIONS"))
        out.append(f"{'|'.join(methods)} {r.rule}")
    return out


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Exception)
    def _any(exc: Exception):
        info = error_info(exc)
        if info is not None:
            return _error(*info)
        if isinstance(exc, HTTPException):
            body = {"message": exc.description or exc.name, "type": exc.name.replace(" ", "")}
            if exc.code == 404:
                body["message"] = f"no endpoint {request.method} {request.path}"
                body["endpoints"] = _endpoints()
            elif exc.code == 405:
                body["message"] = f"{request.method} is not allowed on {request.path}"
            return _error(exc.code or 500, body)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(
            500, {"message": f"internal error: {type(exc).__name__}: {exc}", "type": "InternalError"}
        )


# ---- request helpers ------------------------------------------------------------------------------
def keeper() -> VaultKeeper:
    return current_app.config["VAULT_KEEPER"]


def realm() -> Realm:
    return current_app.config["REALM"]


def _int_arg(name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name} must be between {lo} and {hi}, got {value}")
    return value


def _opt_int(name: str) -> int | None:
    return _int_arg(name, None) if request.args.get(name) not in (None, "") else None  # type: ignore[arg-type]


def _flag(name: str, body: dict[str, Any] | None = None) -> bool:
    raw = (body or {}).get(name, request.args.get(name, ""))
    if isinstance(raw, bool):
        return raw
    return str(raw).lower() in ("1", "true", "yes", "on")


def _body(*required: str) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and request.content_length:
        raise BadRequest("the body must be JSON (Content-Type: application/json)")
    body = body or {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    missing = [k for k in required if body.get(k) in (None, "")]
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)} (body: {{{', '.join(required)}}})")
    return body


def _by(body: dict[str, Any]) -> str:
    return str(body.get("by") or f"api:{request.remote_addr or 'unknown'}")


def _dict(x: Any) -> Any:
    return x.to_dict() if hasattr(x, "to_dict") else x


@api.before_request
def _token_rule() -> None:
    if request.method in MUTATING:
        from tavern.auth import check_mutation

        check_mutation()


def guard_bytes(kind: str) -> None:
    """The token rule for serving an asset's bytes (the Tavern's export calls it too)."""
    if kind in GUARDED_KINDS:
        from tavern.auth import check_mutation

        check_mutation()


# ---- health and the catalog -----------------------------------------------------------------------
@api.get("/health")
def health():
    r = realm()
    return jsonify(
        status="ok",
        service=SERVICE,
        uptime_s=round(time.time() - STARTED, 1),
        home=str(r.home.root),
        assets=keeper().stats()["assets"],
    )


@api.get("/api")
def index():
    return jsonify(service=SERVICE, endpoints=_endpoints())


@api.get("/api/stats")
def stats():
    return jsonify(keeper().stats())


@api.get("/api/locate/<path:ref>")
def locate(ref: str):
    return jsonify(keeper().locate(ref).to_dict())


@api.get("/api/asset/<path:ref>")
def asset(ref: str):
    return jsonify(keeper().asset(ref))


@api.delete("/api/asset/<path:ref>")
def delete_asset(ref: str):
    body = _body()
    zone = str(body.get("zone") or request.args.get("zone") or "local")
    return jsonify(keeper().delete(ref, zone, force=_flag("force", body)))


@api.get("/api/checkpoints")
def checkpoints():
    rows = keeper().checkpoints(
        limit=_int_arg("limit", 100, 1, 10_000),
        offset=_int_arg("offset", 0),
        include_deleted=_flag("include_deleted"),
        skill=request.args.get("skill") or None,
    )
    return jsonify(checkpoints=rows, count=len(rows))


@api.get("/api/search")
def search():
    kind = request.args.get("type") or request.args.get("kind") or None
    found = keeper().search(
        kind, request.args.get("q") or None, _int_arg("limit", 100, 1, 10_000), _int_arg("offset", 0)
    )
    return jsonify(assets=[a.to_dict() for a in found], count=len(found), type=kind)


@api.get("/api/files/<path:ref>")
def file_bytes(ref: str):
    """One file of an asset's copy in this home, streamed (what `VaultClient.ask_vault_first` reads
    when only the keeper's home holds the asset). `?path=REL` names the file inside a folder."""
    from vault.identity import CHUNK
    from vault.zones import SHA_HEADER, LocalZone, safe_relpath

    k = keeper()
    res = k.locate(ref)
    a = res.asset
    guard_bytes(a.kind)
    files = {f.relpath: f for f in k.catalog.files(a.id)}
    rel = request.args.get("path") or (a.name if not a.is_dir else "")
    if rel not in files:
        raise AssetNotFound(rel, f"{a.id} has no file {rel!r}; its files: {', '.join(sorted(files)[:20])}")
    loc = next((x for x in res.locations if x.zone == "local" and x.status == "verified"), None)
    if loc is None:
        raise AssetNotFound(
            a.id, f"{a.id}: this home holds no verified copy (fetch it first: POST /api/fetch)"
        )
    if Path(loc.path).is_absolute():
        # A folder the keeper registered outside its home (the hero's base model, vault/deps.py): the
        # catalog's own path is the root, and the requested name still may not leave it.
        held = Path(loc.path)
        root, relpath = (held, safe_relpath(rel)) if a.is_dir else (held.parent, held.name)
    else:
        root = k.realm.home.root
        relpath = f"{loc.path}/{safe_relpath(rel)}" if a.is_dir else loc.path
    f = LocalZone("local", root).open(relpath)  # refuses paths that leave the root
    size = os.fstat(f.fileno()).st_size

    def chunks():
        with f:
            while data := f.read(CHUNK):
                yield data

    # The bytes as they are on disk, with the sha256 the catalog expects: the receiver checks both,
    # so a copy damaged since it was verified is refused there instead of trusted here.
    headers = {SHA_HEADER: files[rel].sha256, "Content-Length": str(size)}
    return Response(stream_with_context(chunks()), mimetype="application/octet-stream", headers=headers)


@api.get("/api/export/<path:ref>")
def export(ref: str):
    """A tar of the asset's copy in this home (409 when only other zones hold it: fetch it first)."""
    guard_bytes(keeper().catalog.resolve(ref).kind)
    name, stream = keeper().export(ref)
    return Response(
        stream_with_context(stream),
        mimetype="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@api.post("/api/fetch")
def fetch():
    body = _body("asset")
    return jsonify(keeper().fetch(str(body["asset"]), body.get("zone") or None))


@api.post("/api/register")
def register():
    body = _body("path")
    meta = body.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise BadRequest("meta must be a JSON object")
    a = keeper().register(str(body["path"]), kind=body.get("kind"), asset_id=body.get("asset_id"), meta=meta)
    return jsonify(asset=a.to_dict()), 201


@api.post("/api/scan")
def scan():
    return jsonify(keeper().scan().to_dict())


# ---- zones and transfers ----------------------------------------------------------------------------
@api.get("/api/zones")
def zones():
    rows = keeper().zones()
    return jsonify(zones=rows, count=len(rows))


@api.get("/api/zones/<zone_id>")
def zone(zone_id: str):
    return jsonify(keeper().zone(zone_id))


@api.post("/api/transfer")
def transfer():
    """{"asset", "to"} pushes this home's copy to a zone; {"asset", "from"} pulls one home."""
    body = _body("asset")
    src, dst = body.get("from") or "local", body.get("to") or "local"
    return jsonify(keeper().transfer(str(body["asset"]), str(src), str(dst)))


# ---- the ledger -----------------------------------------------------------------------------------
@api.get("/api/ledger")
def ledger():
    rows = keeper().ledger.list(
        limit=_int_arg("limit", 100, 1, 10_000),
        offset=_int_arg("offset", 0),
        skill=request.args.get("skill") or None,
        min_step=_opt_int("min_step"),
        max_step=_opt_int("max_step"),
        include_deleted=_flag("include_deleted"),
    )
    return jsonify(checkpoints=rows, count=len(rows))


@api.get("/api/ledger/best")
def ledger_best():
    metric = request.args.get("metric") or "val_loss"
    row = keeper().ledger.best(metric, request.args.get("direction") or None)
    if row is None:
        raise AssetNotFound(metric, f"no live checkpoint has a {metric} yet")
    return jsonify(row)


@api.get("/api/ledger/summary")
def ledger_summary():
    return jsonify(keeper().ledger.summary())


@api.get("/api/ledger/<ref>")
def ledger_get(ref: str):
    row = keeper().ledger.get(ref)
    if row is None:
        from vault.catalog import close_matches

        close = close_matches(keeper().realm.store, ref)
        raise AssetNotFound(ref, f"no ledger row for {ref!r} (valid forms: {ids.VALID_FORMS})", close)
    return jsonify(row)


# ---- aliases --------------------------------------------------------------------------------------
@api.get("/api/aliases")
def aliases():
    return jsonify(aliases=keeper().ledger.aliases())


def _alias_or_404(name: str) -> dict[str, Any]:
    known = keeper().ledger.aliases()
    if name.strip().lower() not in known:
        raise AssetNotFound(name, f"no alias {name!r}; aliases: {', '.join(known) or 'none'}", list(known))
    return known[name.strip().lower()]


@api.get("/api/aliases/<name>")
def alias(name: str):
    return jsonify({**_alias_or_404(name), "name": name.strip().lower()})


@api.get("/api/aliases/<name>/history")
def alias_history(name: str):
    rows = keeper().ledger.alias_history(name, _int_arg("limit", 100, 1, 10_000))
    return jsonify(name=name.strip().lower(), history=rows, count=len(rows))


@api.put("/api/aliases/<name>")
def alias_set(name: str):
    body = _body("asset")
    res = keeper().set_alias(name, str(body["asset"]), by=_by(body), reason=str(body.get("reason") or ""))
    return jsonify(res)


@api.delete("/api/aliases/<name>")
def alias_remove(name: str):
    body = _body()
    _alias_or_404(name)
    reason = str(body.get("reason") or request.args.get("reason") or "")
    keeper().remove_alias(name, by=_by(body), reason=reason)
    return jsonify(name=name.strip().lower(), removed=True)


# ---- training (the arena's functions; never its tables) -------------------------------------------
@api.get("/api/training/status")
def training_status():
    from arena import control
    from arena.queue import QuestQueue
    from arena.reporting import read_hero
    from sentinels.locks import is_held

    r = realm()
    counts = QuestQueue(r.home, r.store, r.events).counts()
    return jsonify(
        arena_running=is_held(r.home.run, "arena"),
        battle=control.battle_state(r.store),
        pending_commands=control.pending(r.store),
        hero=read_hero(r.store, r.events, counts.get("completed", 0)),
    )


@api.get("/api/training/queue")
def training_queue():
    from arena.queue import QuestQueue

    r = realm()
    q = QuestQueue(r.home, r.store, r.events)
    queued = [quest.to_dict() for quest in q.queued()]
    return jsonify(counts=q.counts(), queued=queued, processing=[x.to_dict() for x in q.list(["processing"])])


@api.post("/api/training/control")
def training_control():
    from arena import control

    body = _body("action")
    # request(), not send(): a resume also wakes an arena that a stop left stopped (as the Tavern does).
    cid, woke = control.request(realm(), str(body["action"]))
    return jsonify(command_id=cid, action=body["action"], status="requested", woke=woke), 202


# ---- the app and its server ---------------------------------------------------------------------------
def create_app(realm: Realm, *, bind: str | None = None, testing: bool = False) -> Flask:
    app = Flask(__name__)
    realm.ensure()
    app.config.update(
        REALM=realm,
        VAULT_KEEPER=VaultKeeper(realm),
        # tavern.auth reads the bound address under this key: the same loopback rule for both servers.
        TAVERN_BIND=bind or realm.config.bind,
        TESTING=testing,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    register_error_handlers(app)
    app.register_blueprint(api)
    # GET /metrics: the realm's numbers for Prometheus, vault transfers among them (watchtower.metrics_export).
    from watchtower.metrics_export import mount

    mount(app, "vault", realm=realm)
    return app


def serve(realm: Realm, host: str, port: int, threads: int = 16) -> None:
    from gunicorn.app.base import BaseApplication

    class VaultServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": threads,
                # A push or an export streams for as long as the bytes take; no worker timeout kills it.
                "timeout": 0,
                "graceful_timeout": 10,
                "keepalive": 5,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "warning",
                "proc_name": "realm-vault",
            }.items():
                self.cfg.set(key, value)

        def load(self):
            # In the worker (no preload): the app and its database connections belong to it.
            return create_app(realm, bind=host)

    log.info("VaultKeeper API on http://%s:%s/ (gunicorn gthread, %d threads)", host, port, threads)
    VaultServer().run()
