"""The OpenAI wire format the Oracle speaks: typed requests, response and chunk bodies, SSE, errors.

It follows OpenAI's API as the official `openai` client sends and reads it (and as `transformers serve`
and vLLM serve it): `/v1/chat/completions` and `/v1/completions`, with `stream` sending one
`data: {json}` event per chunk, then `data: [DONE]`; `stream_options.include_usage` adds a last chunk
with empty `choices` and the `usage`; every error is `{"error": {"message", "type", "param", "code"}}`.

Extension fields (the client sends them through `extra_body`): `max_think_tokens` (the `<think>`
budget), `keep_alive` (Ollama's: seconds, or "5m"/"1h"; 0 unloads after the request, negative keeps it),
`ignore_eos` (vLLM's: generate exactly max_tokens, for benches), `chat_template_kwargs`.
Unknown fields are ignored, as OpenAI-compatible servers do, so newer clients keep working.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any

import msgspec
import orjson

Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
TopP = Annotated[float, msgspec.Meta(gt=0, le=1)]
Tokens = Annotated[int, msgspec.Meta(ge=1)]


class OracleError(Exception):
    """An error answered as OpenAI's error body with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002  (OpenAI's field name)
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ModelNotFound(OracleError):
    """An id the vault cannot resolve: 404, listing valid ids and aliases (openai: NotFoundError)."""

    def __init__(self, model: str, detail: str, valid: list[str]):
        shown = ", ".join(valid[:40]) + (f", ... ({len(valid)} in all)" if len(valid) > 40 else "")
        super().__init__(
            404,
            f"model {model!r} not found: {detail}. Valid ids: {shown or 'none yet'}; also "
            "dio@step-N, any vault alias, a canonical checkpoint name (GET /v1/models lists them)",
            param="model",
            code="model_not_found",
        )


class StillLoading(OracleError):
    """A non-streaming request whose checkpoint is still loading: 503 with Retry-After."""

    def __init__(self, model: str, retry_after: int):
        super().__init__(
            503,
            f"{model} is loading; retry in {retry_after} s",
            type="server_error",
            code="model_loading",
            headers={"Retry-After": str(retry_after)},
        )


# ---- requests ---------------------------------------------------------------------------------------
class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool = False


class Message(msgspec.Struct, frozen=True):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _Common(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Tokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: Annotated[int, msgspec.Meta(ge=1)] = 1
    keep_alive: float | str | None = None
    max_think_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None
    ignore_eos: bool = False

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise OracleError(400, "at most 4 stop sequences", param="stop")
        return [s for s in stops if s]


class ChatRequest(_Common, frozen=True, kw_only=True):
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    max_completion_tokens: Tokens | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    def wanted_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def wanted_top(self) -> int | None:
        """Top alternatives per token, or None when no logprobs are asked for."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Common, frozen=True, kw_only=True):
    prompt: str | Annotated[list[str], msgspec.Meta(min_length=1)]
    logprobs: Annotated[int, msgspec.Meta(ge=0, le=5)] | None = None
    echo: bool = False
    suffix: str | None = None

    def wanted_tokens(self) -> int | None:
        return self.max_tokens

    def wanted_top(self) -> int | None:
        return self.logprobs

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


def parse_request(raw: bytes, kind: type[msgspec.Struct]) -> Any:
    """A typed request from a JSON body, or OracleError 400 naming the field (`param`)."""
    try:
        req = msgspec.json.decode(raw or b"", type=kind)
    except msgspec.ValidationError as exc:
        m = re.search(r"at `\$\.([^`\[]+)", str(exc))
        raise OracleError(400, f"invalid request: {exc}", param=m.group(1) if m else None) from exc
    except msgspec.DecodeError as exc:
        raise OracleError(400, f"the body is not valid JSON: {exc}") from exc
    if req.n != 1:
        raise OracleError(400, "only n=1 is supported (send several requests: they are batched)", param="n")
    if isinstance(req, CompletionRequest) and (req.echo or req.suffix):
        raise OracleError(400, "echo and suffix are not supported", param="echo" if req.echo else "suffix")
    return req


_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def keep_alive_seconds(value: float | str | None, default: float) -> float:
    """Ollama's keep_alive as seconds: a number, or '300ms'/'30s'/'5m'/'1h'; negative means forever."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(value)
    if not m:
        raise OracleError(400, f"keep_alive {value!r}: a number of seconds or like '5m'", param="keep_alive")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


# ---- responses --------------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Chat logprobs ({"content": [...]}) from the engine's per-token entries."""
    if entries is None:
        return None
    return {
        "content": [
            {
                "token": e["token"],
                "logprob": e["logprob"],
                "bytes": list(e["token"].encode()),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in e["top"]
                ],
            }
            for e in entries
        ]
    }


def completion_logprobs(entries: list[dict[str, Any]] | None, offset: int = 0) -> dict[str, Any] | None:
    """Legacy completions logprobs (tokens, token_logprobs, top_logprobs, text_offset)."""
    if entries is None:
        return None
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [dict(e["top"]) for e in entries],
        "text_offset": offsets,
    }


def chat_response(rid: str, model: str, text: str, finish: str, entries, use: dict) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": chat_logprobs(entries),
                "finish_reason": finish,
            }
        ],
        "usage": use,
    }


def chat_chunk(
    rid: str, model: str, delta: dict[str, Any], finish: str | None = None, entries=None, *, with_usage=False
) -> dict[str, Any]:
    chunk = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": now(),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {"index": 0, "delta": delta, "logprobs": chat_logprobs(entries), "finish_reason": finish}
        ],
    }
    if with_usage:
        chunk["usage"] = None  # OpenAI sends null on every chunk but the last when include_usage is on
    return chunk


def completion_choice(index: int, text: str, finish: str | None, entries=None, offset: int = 0) -> dict:
    return {
        "index": index,
        "text": text,
        "logprobs": completion_logprobs(entries, offset),
        "finish_reason": finish,
    }


def completion_body(rid: str, model: str, choices: list[dict], use: dict | None, *, chunk: bool) -> dict:
    body: dict[str, Any] = {
        "id": rid,
        "object": "text_completion",
        "created": now(),
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
    }
    if use is not None or not chunk:
        body["usage"] = use
    return body


def usage_chunk(rid: str, model: str, obj: str, use: dict) -> dict[str, Any]:
    """The last chunk when include_usage is on: no choices, only usage."""
    return {"id": rid, "object": obj, "created": now(), "model": model, "choices": [], "usage": use}


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
SSE_LOADING = b": loading\n\n"
