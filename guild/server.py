"""The skill server: one local skill over HTTP, so another realm (or host) can use it remotely.

Contract: GET /health; GET /info; GET /levels; POST /generate {level, count, seed[, exclude]};
GET /eval?level=N[&n=K]; and POST /score {prompt, expected, response} -> {correct}. JSON in and out;
errors are {"error": message} with status 400 or 404. Run it with `realm skill serve bin --port 8090`.
Standard-library HTTP on purpose: the contract is five routes and the guild must not pull in a web
framework (the Tavern owns the web).
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from guild.client import LocalSkill

log = logging.getLogger(__name__)
MAX_COUNT = 10_000


class BadRequest(ValueError):
    pass


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {n}")
    return n


def make_handler(skill: LocalSkill) -> type[BaseHTTPRequestHandler]:
    max_level = skill.spec.max_level

    class Handler(BaseHTTPRequestHandler):
        server_version = "RealmSkill/1"

        def log_message(self, fmt: str, *args: Any) -> None:  # route access logs to logging
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
            except ValueError as exc:
                raise BadRequest(f"body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object")
            return body

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if method == "GET" and url.path == "/health":
                    self._send(200, {"ok": True, "skill": skill.spec.id})
                elif method == "GET" and url.path == "/info":
                    self._send(200, skill.info())
                elif method == "GET" and url.path == "/levels":
                    self._send(200, {"skill": skill.spec.id, "levels": skill.levels()})
                elif method == "GET" and url.path == "/eval":
                    level = _int(q.get("level"), "level", 1, max_level)
                    n = _int(q.get("n", 5), "n", 1, MAX_COUNT)
                    self._send(
                        200, {"skill": skill.spec.id, "level": level, "items": skill.eval_items(level, n)}
                    )
                elif method == "POST" and url.path == "/generate":
                    b = self._body()
                    level = _int(b.get("level"), "level", 1, max_level)
                    count = _int(b.get("count", 1), "count", 0, MAX_COUNT)
                    seed = _int(b.get("seed", 0), "seed", -(2**63), 2**63 - 1)
                    exclude = b.get("exclude") or []
                    if not isinstance(exclude, list):
                        raise BadRequest("exclude must be a list of strings")
                    items = skill.generate(level, count, seed, {str(x) for x in exclude})
                    self._send(200, {"skill": skill.spec.id, "level": level, "items": items})
                elif method == "POST" and url.path == "/score":
                    b = self._body()
                    args = [str(b.get(k, "")) for k in ("prompt", "expected", "response")]
                    self._send(200, {"correct": skill.score(*args)})
                else:
                    self._send(404, {"error": f"no route {method} {url.path}"})
            except (BadRequest, ValueError) as exc:
                self._send(400, {"error": str(exc)})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

    return Handler


def make_server(skill: LocalSkill, host: str = "127.0.0.1", port: int = 8090) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(skill))
    server.daemon_threads = True
    return server
