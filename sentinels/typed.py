"""One typed mechanism for every file a person writes: realm config, skill YAML, hero YAML, sidecars.

A schema is a `msgspec.Struct` declared with `forbid_unknown_fields=True` (so a misspelt key is an
error, not a silent default), with each field's rule next to the field as `msgspec.Meta` (ge=, le=,
pattern=, and an optional `description` that names what the value is). `convert` runs
`msgspec.convert` (strict: "1" is not an integer, true is not a number) and turns msgspec's
`ValidationError` into a `TypedError` naming the source file, the dotted key and the problem.

Example:

    >>> from typing import Annotated
    >>> import msgspec
    >>> class Ports(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    ...     tavern: Annotated[int, msgspec.Meta(ge=1, le=65535, description="a TCP port")] = 8888
    >>> convert({"tavern": 70000}, Ports, source="realm.yaml")
    Traceback (most recent call last):
    ...
    sentinels.typed.TypedError: realm.yaml: key 'tavern': expected an integer from 1 to 65535 (a TCP port), got 70000

A field can also carry flags for other rooms in `msgspec.Meta(extra={...})`; `flagged` lists the dotted
keys that carry one (the config's "(restart)" keys are declared that way).
"""

import re
import types
import typing
from typing import Annotated, Any, Literal, TypeVar

import msgspec

T = TypeVar("T")

# msgspec ends a validation message with " - at `$.a.b[0]`" when the problem is below the top.
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>.+)`$")


class TypedError(ValueError):
    """A value that does not fit its schema: `source` (file), `key` (dotted path), `problem` (words)."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: key '{key}': {problem}")


def convert(data: Any, type_: type[T], *, source: str, error: type[TypedError] = TypedError) -> T:
    """`data` (parsed YAML/JSON) as an instance of `type_`, or `error` naming source, key and problem."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        key, problem = explain(str(exc), data, type_)
        raise error(source, key, problem) from exc


def explain(message: str, data: Any, type_: Any) -> tuple[str, str]:
    """(dotted key, problem in plain words) for one msgspec validation message."""
    m = _AT.match(message)
    msg, segments = m["msg"], _segments(m["path"] or "")
    node = _type_at(type_, segments)
    for pattern, fmt in (
        (_UNKNOWN, _unknown_problem),
        (_MISSING, lambda *_: "missing; this key is required"),
    ):
        hit = pattern.match(msg)
        if hit:
            return _dotted([*segments, hit["name"]]), fmt(node)
    if node is _NOWHERE:  # a path the schema walk cannot follow: msgspec's own words
        return _dotted(segments), msg
    value = _value_at(data, segments)
    return _dotted(segments), f"expected {describe(node)}, got {_show(value)}"


def describe(tp: Any) -> str:
    """A field's type in words: 'an integer from 1 to 65535 (a TCP port)', "one of 'a', 'b'"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        metas = [a for a in args[1:] if isinstance(a, msgspec.Meta)]
        core = describe(args[0]) + "".join(_bounds(m) for m in metas)
        text = next((m.description for m in metas if m.description), None)
        return f"{core} ({text})" if text else core
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in args)
    if origin in (list, tuple, set, frozenset):
        return f"a list, each {describe(args[0])}" if args else "a list"
    if origin is dict or tp is dict or _is_struct(tp):
        return "a mapping"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def flagged(type_: Any, flag: str) -> frozenset[str]:
    """Dotted keys of the fields (at any depth) declared with `msgspec.Meta(extra={flag: True})`."""
    out: set[str] = set()

    def walk(cls: Any, prefix: str) -> None:
        for field in msgspec.structs.fields(cls):
            key, tp = f"{prefix}{field.encode_name}", field.type
            if typing.get_origin(tp) is Annotated:
                if any(
                    isinstance(m, msgspec.Meta) and (m.extra or {}).get(flag) for m in typing.get_args(tp)[1:]
                ):
                    out.add(key)
                tp = typing.get_args(tp)[0]
            if _is_struct(tp):
                walk(tp, key + ".")

    walk(type_, "")
    return frozenset(out)


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _segments(path: str) -> list[str | int]:
    return [name if name else (int(i) if i.isdigit() else i) for name, i in _SEGMENT.findall(path)]


def _dotted(segments: list[str | int]) -> str:
    text = "".join(f"[{s}]" if isinstance(s, int) or s == "..." else f".{s}" for s in segments)
    return text.lstrip(".") or "<top>"


_NOWHERE = object()


def _type_at(tp: Any, segments: list[str | int]) -> Any:
    """The declared type at a path, or _NOWHERE when the walk cannot follow it."""
    for seg in segments:
        tp = _container(tp, seg)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if _is_struct(tp):
            tp = next((f.type for f in msgspec.structs.fields(tp) if f.encode_name == seg), _NOWHERE)
        elif origin is dict and args:
            tp = args[1]
        elif origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
            tp = args[0]
        elif origin is tuple and isinstance(seg, int) and seg < len(args):
            tp = args[seg]
        else:
            return _NOWHERE
    return tp


def _container(tp: Any, seg: str | int) -> Any:
    """Step through Annotated and unions to the arm a path segment can index into."""
    while True:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is Annotated:
            tp = args[0]
        elif origin in (typing.Union, types.UnionType):
            arms = [a for a in args if a is not type(None)]
            keyed = [a for a in arms if _is_struct(a) or typing.get_origin(a) is dict]
            tp = (
                (keyed or arms or [_NOWHERE])[0]
                if isinstance(seg, str) and seg != "..."
                else (arms or [_NOWHERE])[0]
            )
        else:
            return tp


def _value_at(data: Any, segments: list[str | int]) -> Any:
    for seg in segments:
        try:
            data = data[seg]
        except (KeyError, IndexError, TypeError):
            return _MISSING_VALUE
    return data


_MISSING_VALUE = object()


def _show(value: Any) -> str:
    if value is _MISSING_VALUE:
        return "something else"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def _unknown_problem(tp: Any) -> str:
    tp = _container(tp, "") if tp is not _NOWHERE else tp
    if _is_struct(tp):
        return "unknown key; allowed keys here: " + ", ".join(
            f.encode_name for f in msgspec.structs.fields(tp)
        )
    return "unknown key"


def _bounds(meta: msgspec.Meta) -> str:
    if meta.ge is not None and meta.le is not None:
        return f" from {meta.ge} to {meta.le}"
    rules = ((">=", meta.ge), (">", meta.gt), ("<=", meta.le), ("<", meta.lt), ("matching", meta.pattern))
    parts = [f"{op} {v}" for op, v in rules if v is not None]
    return (" " + " and ".join(parts)) if parts else ""
