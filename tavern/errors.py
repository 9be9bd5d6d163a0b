"""JSON error helpers: every /api error is `{"error": ..., "status": ...}` with the right code.

Pages get Flask's HTML errors; API callers (curl, the page's fetch) always get JSON, including for
404/405 and uncaught exceptions, so a client never has to parse an HTML error page.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("realm.tavern")


class ApiError(Exception):
    """Raised inside an API view; becomes a JSON error response."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def error_response(status: int, message: str, **extra: Any):
    body = {"error": message, "status": status, **extra}
    return jsonify(body), status


def bad_request(message: str, **extra: Any):
    return error_response(400, message, **extra)


def not_found(message: str, **extra: Any):
    return error_response(404, message, **extra)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if request.path.startswith("/api/") or request.path == "/health":
            return error_response(exc.code or 500, exc.description or exc.name)
        return exc

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        if request.path.startswith("/api/"):
            return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
        return "internal error", 500
