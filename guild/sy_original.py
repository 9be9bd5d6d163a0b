"""SY in the original skill server's format: its two JSON answer shapes, read exactly.

The original's SY eval data are chats whose assistant answer is one JSON object, in one of two
shapes; the prompt's `Return JSON: ...` line says which:

    solutions  {"solutions": {"1": {"word": "FREE", "syllables": ["FREE"]}, ...}}
    flat       {"1": "DETERMINED", "2": "ART", ...}

Clue numbers are strings, words are uppercase; a `solutions` entry carries `syllables` when the
prompt asks for them (its template names them), and only then.

Tolerance rules, the only ones (guild/README.md "Scoring rules" repeats them):
  - JSON whitespace does not matter (indentation, newlines, spaces between tokens, and whitespace
    before or after the object), nor does key order.
  - Everything else must equal the gold: the response is that one JSON object and nothing else (no
    code fence, no chatter); the same keys at every level (each clue number as the same string, no
    clue missing, no extra clue, no extra field); each word the same string (uppercase, as the
    gold); each syllable list the same strings in the same order, where the gold has one.
  - A key repeated within one object is a miss: JSON parsers keep the last one, so without this a
    response could list every candidate under one clue.
  - NaN and Infinity are not JSON: a miss.
Anything else wrong is a miss, so an echo of the prompt, a list of every tile or of every candidate
word scores 0 (tests/test_sy_original.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

SHAPES = ("solutions", "flat")
_CLUE = re.compile(r"^[1-9][0-9]*$")
_RETURN = re.compile(r"Return JSON:\s*(.*)", re.S)


class _NotExact(ValueError):
    """A response that is not strictly one JSON object (duplicate key, NaN)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _NotExact(f"key {k!r} repeated")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise _NotExact(f"{name} is not JSON")


def strict_loads(text: str) -> Any:
    """The JSON value `text` holds and nothing else, or None (duplicate keys and NaN refused)."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and _NotExact are ValueErrors
        return None


def _is_clues(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(_CLUE.match(k) for k in obj)


def _is_entry(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("word"), str) or not entry["word"]:
        return False
    syl = entry.get("syllables", [""])
    return isinstance(syl, list) and bool(syl) and all(isinstance(s, str) for s in syl)


def shape_of(obj: Any) -> str | None:
    """Which of the original's shapes a parsed gold answer has, or None."""
    if isinstance(obj, dict) and set(obj) == {"solutions"}:
        sol = obj["solutions"]
        if _is_clues(sol) and all(_is_entry(e) and set(e) <= {"word", "syllables"} for e in sol.values()):
            return "solutions"
        return None
    if _is_clues(obj) and all(isinstance(v, str) and v for v in obj.values()):
        return "flat"
    return None


def parse_gold(expected: str) -> dict[str, Any] | None:
    """The parsed gold when `expected` is in one of the original's shapes, else None (our own
    formats: `{"answers": [...]}` and `N. WORD = ...` lines are not)."""
    obj = strict_loads(expected.strip())
    return obj if shape_of(obj) else None


def asks(prompt: str) -> tuple[str, bool] | None:
    """What the prompt's `Return JSON:` template asks for: (shape, with syllables), or None."""
    m = _RETURN.search(prompt)
    if not m:
        return None
    template = m.group(1)
    if '"solutions"' in template:
        return "solutions", '"syllables"' in template
    if re.search(r'"\d+"\s*:', template):
        return "flat", False
    return None


def words(gold: dict[str, Any]) -> list[str]:
    """The gold's words in clue-number order."""
    clues = gold["solutions"] if shape_of(gold) == "solutions" else gold
    return [
        (v["word"] if isinstance(v, dict) else v) for _, v in sorted(clues.items(), key=lambda kv: int(kv[0]))
    ]


def score(gold: dict[str, Any], response: str) -> bool:
    """Exact: the response parses strictly to an object equal to the gold (see the module rules).

    Python's equality is the rule: dicts compare without order, lists in order, and a string never
    equals a number, a list or a dict, so a word given as a list of candidates is a miss."""
    return strict_loads(response.strip()) == gold
