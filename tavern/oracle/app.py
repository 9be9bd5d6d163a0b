"""The Oracle's Flask app: the OpenAI endpoints, the Oracle's own, and the original server's.

    GET  /v1/models, /v1/models/<id>        every checkpoint and alias (OpenAI's list shape, plus fields)
    POST /v1/chat/completions, /v1/completions   OpenAI's, with and without stream
    POST /oracle/load {"model", "keep_alive"?}   preload (token)
    POST /oracle/unload {"model"}                unload (token)
    GET  /oracle/status                          loaded checkpoints (memory, last used), loads, generations
    GET  /models/info                            the original inference server's: what is loaded
    POST /models/reload {"model_path"}           the original's: load the checkpoint at a path in a zone (token)
    GET  /health
    GET  /metrics                                Prometheus (watchtower/metrics_export.py)

A request whose client goes away is cancelled: a stream's generator is closed when a write fails
(gunicorn closes the response iterator), and while a request waits for tokens its socket is peeked,
so an idle closed connection is seen too; either sets the job's cancel flag, which ends its row of the
batch at the next step. The token rule for load, unload and reload is the Tavern's (tavern/auth.py's
`is_loopback`): open on loopback with `oracle.open_on_loopback`, else `oracle.token` in
`X-Realm-Token` or `Authorization: Bearer`.
"""

from __future__ import annotations

import hmac
import logging
import queue
import select
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from arena.adapters import is_adapter_checkpoint
from arena.inference import chat_prompt_ids
from tavern.auth import TOKEN_HEADER, is_loopback
from tavern.oracle import protocol as P
from tavern.oracle.engine import Engine, Job
from tavern.oracle.ids import ModelIds, Target
from tavern.oracle.manager import ModelManager

log = logging.getLogger("realm.oracle.app")

MAX_BODY = 4 * 1024 * 1024  # a prompt is capped in tokens; this only stops absurd bodies early
POLL_S = 0.25  # how often a waiting request checks whether its client is still there


class ClientGone(Exception):
    """The client closed its connection while its request waited."""


class Oracle:
    """What the app serves with: config, ids, the model manager and the engine."""

    def __init__(self, config, ids: ModelIds, *, bind: str, manager: ModelManager | None = None):
        self.config, self.cfg, self.ids, self.bind = config, config.oracle, ids, bind
        if self.cfg.threads:
            import torch

            torch.set_num_threads(self.cfg.threads)
        self.manager = manager or ModelManager(self.cfg)
        self.engine = Engine(self.cfg.max_batch, self.cfg.batch_window_ms / 1000)

    def close(self) -> None:
        self.engine.close()
        self.manager.close()

    # ---- requests -> jobs ---------------------------------------------------------------------------
    def keep_alive(self, req) -> float:
        return P.keep_alive_seconds(req.keep_alive, self.cfg.keep_alive_s)

    def max_tokens(self, req) -> int:
        return min(req.wanted_tokens() or self.cfg.default_max_tokens, self.cfg.max_tokens)

    def check_prompt(self, ids: list[int], param: str) -> list[int]:
        if len(ids) > self.cfg.max_prompt_tokens:
            raise P.OracleError(
                400,
                f"the prompt is {len(ids)} tokens; this Oracle takes at most {self.cfg.max_prompt_tokens}"
                " (oracle.max_prompt_tokens)",
                param=param,
                code="context_length_exceeded",
            )
        if not ids:
            raise P.OracleError(400, "the prompt is empty", param=param)
        return ids

    def jobs(self, req, entry, prompts: list[list[int]], out: queue.Queue) -> list[Job]:
        return [
            Job(
                entry=entry,
                prompt_ids=ids,
                max_tokens=self.max_tokens(req),
                out=out,
                index=i,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=req.seed,
                ignore_eos=req.ignore_eos,
                think_budget=req.max_think_tokens,
                stops=req.stops(),
                top_logprobs=req.wanted_top(),
            )
            for i, ids in enumerate(prompts)
        ]

    def collect(self, jobs: list[Job], out: queue.Queue, sock) -> list[dict[str, Any]]:
        """Run jobs to the end and gather each one's text, finish reason, logprobs and token counts."""
        res = [{"text": [], "entries": None, "finish": None, "prompt": 0, "completion": 0} for _ in jobs]
        for j in jobs:
            if j.top_logprobs is not None:
                res[j.index]["entries"] = []
            self.engine.submit(j)
        left = len(jobs)
        try:
            while left:
                ev = self.next_event(out, sock)
                r = res[ev[1]]
                if ev[0] == "delta":
                    r["text"].append(ev[2])
                    if ev[3] is not None:
                        r["entries"].extend(ev[3])
                elif ev[0] == "done":
                    r["finish"], r["prompt"], r["completion"] = ev[2], ev[3], ev[4]
                    left -= 1
                else:
                    raise ev[2]
        finally:
            for j in jobs:
                j.cancel.set()  # a no-op for finished jobs; stops the rest when we leave early
        for r in res:
            r["text"] = "".join(r["text"])
        return res

    def drain(self, out: queue.Queue, sock) -> list[tuple]:
        """The next event (waiting for it) and every other one already queued."""
        events = [self.next_event(out, sock)]
        while True:
            try:
                events.append(out.get_nowait())
            except queue.Empty:
                return events

    def next_event(self, out: queue.Queue, sock) -> tuple:
        while True:
            try:
                return out.get(timeout=POLL_S)
            except queue.Empty:
                if client_gone(sock):
                    raise ClientGone() from None


def client_gone(sock) -> bool:
    """Whether the peer closed the connection (readable with nothing to read). gunicorn gives the
    socket in the environ; other servers do not, and then only a failed write tells."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json", headers=headers)


def create_app(oracle: Oracle) -> Flask:
    app = Flask("realm-oracle")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["ORACLE"] = oracle
    o = oracle
    # GET /metrics and realm_oracle_request_duration_seconds (watchtower.metrics_export): the engine's and
    # the loads' numbers always, the realm's too when this Oracle holds the home's vault in-process.
    from watchtower.metrics_export import OracleCollector, mount

    realm = getattr(o.ids.vault, "realm", None)  # LocalVault has it; RemoteVault (--remote) has no home
    mount(app, "oracle", realm=realm, collectors=[OracleCollector(o.manager, o.engine)])

    @app.errorhandler(P.OracleError)
    def _oracle_error(exc: P.OracleError):
        return json_response(exc.body(), exc.status, exc.headers)

    @app.errorhandler(ClientGone)
    def _gone(_exc):
        log.info("client went away; its generation was cancelled")
        return Response(status=499)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        kind = "invalid_request_error" if (exc.code or 500) < 500 else "server_error"
        err = P.OracleError(exc.code or 500, exc.description or exc.name, type=kind, code=exc.name.lower())
        return json_response(err.body(), err.status)

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        log.exception("unhandled error")
        return json_response(P.OracleError(500, f"internal error: {exc}", type="server_error").body(), 500)

    # ---- OpenAI ---------------------------------------------------------------------------------------
    @app.get("/v1/models")
    def models():
        loaded = {e["model"] for e in o.manager.status()["loaded"]}
        data = o.ids.listing()
        for m in data:
            m["loaded"] = m.get("checkpoint", m["id"]) in loaded
        return json_response({"object": "list", "data": data})

    @app.get("/v1/models/<path:model_id>")
    def model(model_id: str):
        for m in o.ids.listing():
            if m["id"] == model_id:
                return json_response(m)
        t = o.ids.resolve(model_id)
        return json_response(
            {"id": model_id, "object": "model", "created": 0, "owned_by": "realm", "checkpoint": t.name}
        )

    def _generate(req, target, prompts: list, sock) -> list:
        """A non-streaming request's results, one per prompt, with the checkpoint held while it runs."""
        keep = o.keep_alive(req)
        entry = o.manager.acquire(target, wait_s=o.cfg.load_wait_s, keep_alive_s=keep)
        try:
            out: queue.Queue = queue.Queue()
            return o.collect(o.jobs(req, entry, prompts, out), out, sock)
        finally:
            o.manager.release(entry, keep)

    @app.post("/v1/chat/completions")
    def chat():
        with o.engine.announce():
            return _chat()

    def _chat():
        req = P.parse_request(request.get_data(), P.ChatRequest)
        target = o.ids.resolve(req.model)
        tok = o.manager.tokenizers.get(target.path, target.base)
        messages = [msgspec.structs.asdict(m) for m in req.messages]
        prompt = o.check_prompt(
            chat_prompt_ids(tok, messages, **(req.chat_template_kwargs or {})), "messages"
        )
        sock = request.environ.get("gunicorn.socket")
        rid = P.new_id("chatcmpl")
        if req.stream:
            return sse_response(stream_chat(o, req, target, prompt, rid, sock))
        (r,) = _generate(req, target, [prompt], sock)
        use = P.usage(r["prompt"], r["completion"])
        return json_response(P.chat_response(rid, target.name, r["text"], r["finish"], r["entries"], use))

    @app.post("/v1/completions")
    def completions():
        with o.engine.announce():
            return _completions()

    def _completions():
        req = P.parse_request(request.get_data(), P.CompletionRequest)
        target = o.ids.resolve(req.model)
        tok = o.manager.tokenizers.get(target.path, target.base)
        prompts = [o.check_prompt(tok(p)["input_ids"], "prompt") for p in req.prompts()]
        sock = request.environ.get("gunicorn.socket")
        rid = P.new_id("cmpl")
        if req.stream:
            return sse_response(stream_completions(o, req, target, prompts, rid, sock))
        res = _generate(req, target, prompts, sock)
        choices = [P.completion_choice(i, r["text"], r["finish"], r["entries"]) for i, r in enumerate(res)]
        use = P.usage(sum(r["prompt"] for r in res), sum(r["completion"] for r in res))
        return json_response(P.completion_body(rid, target.name, choices, use, chunk=False))

    # ---- the Oracle's own -----------------------------------------------------------------------------
    @app.post("/oracle/load")
    def load():
        check_token(o)
        body = _json_body()
        target = o.ids.resolve(_field(body, "model"))
        keep = P.keep_alive_seconds(body.get("keep_alive"), o.cfg.keep_alive_s)
        entry = o.manager.load(target, keep)
        return json_response({"status": "loaded", "requested": target.requested, **entry.to_dict()})

    @app.post("/oracle/unload")
    def unload():
        check_token(o)
        body = _json_body()
        model_id = _field(body, "model")
        name = model_id if o.manager.is_loaded(model_id) else o.ids.resolve(model_id).name
        return json_response({"model": name, "unloaded": o.manager.unload(name)})

    @app.get("/oracle/status")
    def status():
        return json_response(
            {
                **o.manager.status(),
                "generation": o.engine.status(),
                "limits": {
                    "max_tokens": o.cfg.max_tokens,
                    "max_prompt_tokens": o.cfg.max_prompt_tokens,
                    "max_batch": o.cfg.max_batch,
                },
                "hero": o.ids.prefix.rstrip("@"),
            }
        )

    @app.get("/health")
    def health():
        return json_response({"status": "ok", "service": "oracle"})

    # ---- the original inference server's -------------------------------------------------------------
    @app.get("/models/info")
    def models_info():
        st = o.manager.status()
        current = st["loaded"][0] if st["loaded"] else None
        return json_response(
            {
                "loaded": current is not None,
                "model_name": current and current["model"],
                "model_path": current and current["path"],
                "device": st["device"],
                "dtype": st["dtype"],
                "models": st["loaded"],
            }
        )

    @app.post("/models/reload")
    def models_reload():
        check_token(o)
        body = _json_body()
        path = Path(_field(body, "model_path")).expanduser()
        target = reload_target(o, path)
        entry = o.manager.load(target)
        return json_response(
            {"status": "ok", "model_name": entry.name, "model_path": str(entry.path), "load_s": entry.load_s}
        )

    return app


def reload_target(o: Oracle, path: Path) -> Target:
    """The checkpoint at `path`, which must lie inside a zone on this host (the home, a local zone,
    the fetch cache): a path anywhere else is refused, so the endpoint cannot load arbitrary files."""
    real = path.resolve()
    roots = [r.resolve() for r in o.ids.vault.zone_roots()]
    if not any(real.is_relative_to(r) for r in roots):
        raise P.OracleError(
            403,
            f"model_path {str(path)!r} is not inside a zone on this host ({', '.join(map(str, roots))})",
            type="permission_error",
            param="model_path",
        )
    if not (real / "config.json").is_file() and not is_adapter_checkpoint(real):
        raise P.OracleError(
            404, f"no checkpoint at {str(path)!r}", param="model_path", code="model_not_found"
        )
    return o.ids.resolve(real.name)


def check_token(o: Oracle) -> None:
    """The token rule for load, unload and reload (the Tavern's, with Authorization: Bearer too)."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise P.OracleError(403, f"cross-origin request from {origin} refused", type="permission_error")
    if is_loopback(o.bind) and o.cfg.open_on_loopback:
        return
    if not o.cfg.token:
        raise P.OracleError(
            403,
            "load, unload and reload are closed: the Oracle is not bound to loopback (or open_on_loopback"
            " is false) and oracle.token is not set",
            type="permission_error",
        )
    auth = request.headers.get("Authorization", "")
    given = request.headers.get(TOKEN_HEADER) or (auth[7:] if auth.lower().startswith("bearer ") else "")
    if not hmac.compare_digest(given.encode(), o.cfg.token.encode()):
        raise P.OracleError(
            401, f"missing or wrong {TOKEN_HEADER} (or bearer) token", type="authentication_error"
        )


def _json_body() -> dict[str, Any]:
    try:
        body = orjson.loads(request.get_data() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise P.OracleError(400, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise P.OracleError(400, "the body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise P.OracleError(400, f"{name!r} (a string) is required", param=name)
    return value


# ---- streams ----------------------------------------------------------------------------------------
def sse_response(events) -> Response:
    return Response(
        events,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _acquire_streaming(o: Oracle, target: Target, keep: float):
    """Yields `: loading` comment lines until the checkpoint is loaded, then the entry itself."""
    wait = 0.0  # the first look does not wait, so a stream says at once that it is loading
    while True:
        try:
            yield o.manager.acquire(target, wait_s=wait, keep_alive_s=keep)
            return
        except P.StillLoading:
            yield P.SSE_LOADING
            wait = 1.0


def stream_chat(o: Oracle, req: P.ChatRequest, target: Target, prompt: list[int], rid: str, sock):
    with o.engine.announce():
        yield from _stream_chat(o, req, target, prompt, rid, sock)


def _stream_chat(o: Oracle, req: P.ChatRequest, target: Target, prompt: list[int], rid: str, sock):
    keep, entry, jobs = o.keep_alive(req), None, []
    usage_on = req.include_usage
    try:
        for item in _acquire_streaming(o, target, keep):
            if isinstance(item, bytes):
                yield item
            else:
                entry = item
        out: queue.Queue = queue.Queue()
        jobs = o.jobs(req, entry, [prompt], out)
        o.engine.submit(jobs[0])
        yield P.sse(P.chat_chunk(rid, target.name, {"role": "assistant", "content": ""}, with_usage=usage_on))
        while True:
            # Every event already waiting goes out in one write: one SSE event per token still, but
            # fewer wake-ups and system calls when tokens come faster than the client reads.
            parts, end = [], False
            for ev in o.drain(out, sock):
                if ev[0] == "delta":
                    chunk = P.chat_chunk(
                        rid, target.name, {"content": ev[2]}, None, ev[3], with_usage=usage_on
                    )
                    parts.append(P.sse(chunk))
                elif ev[0] == "done":
                    parts.append(P.sse(P.chat_chunk(rid, target.name, {}, ev[2], with_usage=usage_on)))
                    if usage_on:
                        use = P.usage(ev[3], ev[4])
                        parts.append(P.sse(P.usage_chunk(rid, target.name, "chat.completion.chunk", use)))
                    parts.append(P.SSE_DONE)
                    end = True
                else:
                    parts += [P.sse(ev[2].body()), P.SSE_DONE]
                    end = True
            yield b"".join(parts)
            if end:
                return
    except ClientGone:
        log.info("stream client went away; its generation was cancelled")
    except P.OracleError as exc:  # after the headers went out: the error is the stream's last event
        yield P.sse(exc.body()) + P.SSE_DONE
    finally:
        # Runs when the stream ends, fails to write, or is closed by the server: the job stops.
        for j in jobs:
            j.cancel.set()
        if entry is not None:
            o.manager.release(entry, keep)


def stream_completions(o: Oracle, req: P.CompletionRequest, target: Target, prompts, rid: str, sock):
    with o.engine.announce():
        yield from _stream_completions(o, req, target, prompts, rid, sock)


def _stream_completions(o: Oracle, req: P.CompletionRequest, target: Target, prompts, rid: str, sock):
    keep, entry, jobs = o.keep_alive(req), None, []
    usage_on = req.include_usage
    try:
        for item in _acquire_streaming(o, target, keep):
            if isinstance(item, bytes):
                yield item
            else:
                entry = item
        out: queue.Queue = queue.Queue()
        jobs = o.jobs(req, entry, prompts, out)
        for j in jobs:
            o.engine.submit(j)
        offsets = [0] * len(jobs)
        totals = [0, 0]
        left = len(jobs)
        while left:
            ev = o.next_event(out, sock)
            i = ev[1]
            if ev[0] == "delta":
                choice = P.completion_choice(i, ev[2], None, ev[3], offsets[i])
                offsets[i] += len(ev[2])
            elif ev[0] == "done":
                choice = P.completion_choice(i, "", ev[2])
                totals[0] += ev[3]
                totals[1] += ev[4]
                left -= 1
            else:
                yield P.sse(ev[2].body())
                yield P.SSE_DONE
                return
            yield P.sse(P.completion_body(rid, target.name, [choice], None, chunk=True))
        if usage_on:
            yield P.sse(P.usage_chunk(rid, target.name, "text_completion", P.usage(*totals)))
        yield P.SSE_DONE
    except ClientGone:
        log.info("stream client went away; its generation was cancelled")
    except P.OracleError as exc:
        yield P.sse(exc.body()) + P.SSE_DONE
    finally:
        for j in jobs:
            j.cancel.set()
        if entry is not None:
            o.manager.release(entry, keep)
