"""The Vault room's routes: browse checkpoints and zones, promote, delete, push, fetch and export.

Every action goes through `vault.keeper.VaultKeeper` in this process (the Tavern serves the local
home, so the keeper's functions are a call away; a remote home is the Vault API's job, vault/server.py).
The vault's typed errors become the Tavern's JSON errors with the status `vault.server.error_info`
gives them (the one mapping), so an unknown checkpoint is 404 and a last copy 409 here as there.

Reads: GET /api/vault (the room's snapshot), /api/vault/aliases/NAME/history, /api/vault/export/REF
(a tar, streamed). Writes (the token rule, tavern/auth.py): POST /api/vault/promote, /delete, /push,
/fetch.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Response, current_app, jsonify, request, stream_with_context

from tavern.api import api, realm
from tavern.auth import mutating
from tavern.errors import ApiError
from vault.errors import VaultError

CHAMPION = "champion"
HISTORY_LIMIT = 50


def keeper() -> Any:
    """The app's VaultKeeper (one per app: it only caches the catalog and ledger objects)."""
    from vault.keeper import VaultKeeper

    k = current_app.extensions.get("vault.keeper")
    if k is None:
        k = current_app.extensions["vault.keeper"] = VaultKeeper(realm())
    return k


def vault_errors(view):
    """The vault's and the zones' typed errors as the Tavern's JSON errors, with the API's statuses."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        from vault.server import error_info
        from vault.zones import ZoneError

        try:
            return view(*args, **kwargs)
        except (VaultError, ZoneError) as exc:
            info = error_info(exc)
            if info is None:
                raise
            status, body = info
            raise ApiError(status, body.pop("message"), **body) from exc

    return wrapper


def _body(*required: str) -> dict[str, Any]:
    body = request.get_json(silent=True) or {}
    missing = [k for k in required if not body.get(k)]
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(missing)}")
    return body


@api.get("/api/vault")
@vault_errors
def vault_room():
    """Everything the room shows: checkpoints (ledger stats, aliases, zones holding each), zones with
    free space, aliases, the champion's history and the catalog's counts."""
    k = keeper()
    limit = min(max(int(request.args.get("limit", 200) or 200), 1), 2000)
    return jsonify(
        checkpoints=k.checkpoints(limit=limit, include_deleted=True),
        zones=k.zones(),
        aliases=k.ledger.aliases(),
        champion_history=k.ledger.alias_history(CHAMPION, HISTORY_LIMIT),
        stats=k.stats(),
        last_event_id=realm().events.last_id(),
    )


@api.get("/api/vault/aliases/<name>/history")
@vault_errors
def vault_alias_history(name: str):
    return jsonify(name=name, history=keeper().ledger.alias_history(name, HISTORY_LIMIT))


@api.post("/api/vault/promote")
@mutating
@vault_errors
def vault_promote():
    """Point `champion` (or `alias`) at a checkpoint; the move lands in the alias history."""
    body = _body("asset")
    name = str(body.get("alias") or CHAMPION)
    reason = str(body.get("reason") or "promoted in the Tavern's Vault room")
    return jsonify(keeper().set_alias(name, str(body["asset"]), by="tavern", reason=reason))


@api.post("/api/vault/delete")
@mutating
@vault_errors
def vault_delete():
    body = _body("asset")
    zone = str(body.get("zone") or "local")
    return jsonify(keeper().delete(str(body["asset"]), zone, force=bool(body.get("force"))))


@api.post("/api/vault/push")
@mutating
@vault_errors
def vault_push():
    body = _body("asset", "zone")
    return jsonify(keeper().push(str(body["asset"]), str(body["zone"])).to_dict())


@api.post("/api/vault/fetch")
@mutating
@vault_errors
def vault_fetch():
    body = _body("asset")
    return jsonify(keeper().fetch(str(body["asset"]), body.get("zone") or None))


@api.get("/api/vault/export/<path:ref>")
@vault_errors
def vault_export(ref: str):
    from vault.server import guard_bytes

    guard_bytes(keeper().catalog.resolve(ref).kind)  # a config may hold the realm's token
    name, stream = keeper().export(ref)
    return Response(
        stream_with_context(stream),
        mimetype="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
