"""Who may change the realm: the token rule for mutating API calls.

Reads are open. A mutating call (POST/PUT) needs the header `X-Realm-Token` equal to
`tavern.token`, unless the server is bound to a loopback address and `tavern.open_on_loopback` is
true. The token travels in a header, never a cookie, so another site cannot make a browser send it.
Even when open, a request that carries a foreign `Origin` header is refused: that is a browser on
another site posting a form at the Tavern (CSRF), which a header-less curl never looks like.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import wraps
from urllib.parse import urlsplit

from flask import current_app, request

from tavern.errors import ApiError

TOKEN_HEADER = "X-Realm-Token"


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_status() -> dict:
    """What the page needs to know: is a token required, is one configured."""
    cfg = current_app.config["REALM"].config
    open_ = is_loopback(current_app.config["TAVERN_BIND"]) and cfg.tavern.open_on_loopback
    return {"token_required": not open_, "token_configured": bool(cfg.tavern.token), "header": TOKEN_HEADER}


def check_mutation() -> None:
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise ApiError(403, f"cross-origin request from {origin} refused")
    if not auth_status()["token_required"]:
        return
    token = current_app.config["REALM"].config.tavern.token
    if not token:
        raise ApiError(
            403,
            "mutating calls are closed: the Tavern is not bound to loopback (or open_on_loopback is false)"
            " and tavern.token is not set; set tavern.token in realm.yaml",
        )
    given = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, f"missing or wrong {TOKEN_HEADER} header")


def mutating(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        check_mutation()
        return view(*args, **kwargs)

    return wrapper
