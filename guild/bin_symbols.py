"""BIN's text layer: graphemes, the Symbol Key and Operations blocks, calls, and reading answers.

The original skill servers write BIN problems in a symbol language:

    Symbol Key:
      🥵 = 0 (zero bit)
      🥶 = 1 (one bit)
    Operations:
      🔢 = tobinary
      join = add
    Compute: 🔢(246062744)

and the gold answer uses the alias: `🔢(246062744) = 🥶🥶🥵…`. This module parses and renders
that text; the operations' meaning and the generator live in `guild/bin.py`.

Graphemes. A symbol is one whitespace-free token of one or more graphemes (⬆️ is U+2B06 U+FE0F,
a ZWJ family is five code points, a keycap 5️⃣ is three, and the original's ✖️🔢 is two graphemes).
Text is split with the `regex` package's `\\X` (Unicode extended grapheme clusters, UAX #29), so a
value is read by matching the key's symbols grapheme by grapheme and a symbol is never cut in half
(a variation selector or ZWJ glued onto a symbol makes another grapheme, which is not the symbol).
Limits: a symbol that is a grapheme-prefix of the other (🔢 and 🔢🔢) is read greedily, longest
first; the generator never makes such pairs. `*` and backticks are stripped as markdown before
reading, so `*️⃣` cannot be a symbol.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import regex

CIRCLED = ("⓪", "①")
_GRAPHEME = regex.compile(r"\X")
# `TOKEN = RHS (note)`: a key line (RHS 0 or 1) or an alias line (RHS an operation name).
_DEF = re.compile(r"^\s*(\S+)\s*=\s*([A-Za-z_][A-Za-z0-9_]*|[01])\s*(?:\(([^()]*)\))?\s*$")
_CALL = re.compile(r"Compute:\s*(.+)")
_FENCE = re.compile(r"```[a-zA-Z]*")
_DIGITS = frozenset("0123456789")


def graphemes(text: str) -> list[str]:
    return _GRAPHEME.findall(text)


@dataclass
class Problem:
    """A BIN prompt as structure: what `render_prompt` writes and `parse_prompt` reads back."""

    alias: str  # the call's name as written (an operation name, or an alias from the Operations block)
    args: list[str]  # as written: notation, or decimal for tobinary
    digits: tuple[str, str] = CIRCLED
    notes: tuple[str | None, str | None] = (None, None)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> operation, in block order
    tag: str | None = None
    keyed: bool = False  # a Symbol Key block is present

    @property
    def op_name(self) -> str:
        return self.aliases.get(self.alias, self.alias)

    @property
    def call(self) -> str:
        return f"{self.alias}({', '.join(self.args)})"


def render_prompt(p: Problem) -> str:
    lines = [f"[{p.tag}]"] if p.tag else []
    if p.keyed:
        lines.append("Symbol Key:")
        for d, bit, note in ((p.digits[0], 0, p.notes[0]), (p.digits[1], 1, p.notes[1])):
            lines.append(f"  {d} = {bit}" + (f" ({note})" if note else ""))
    if p.aliases:
        lines.append("Operations:")
        lines += [f"  {a} = {op}" for a, op in p.aliases.items()]
    lines.append(f"Compute: {p.call}")
    return "\n".join(lines)


def parse_prompt(prompt: str) -> Problem | None:
    """The prompt's structure, or None without a `Compute:` call. Key and alias lines may sit in
    either block (v1 prompts put the alias inside the Symbol Key) and may carry a (note)."""
    m = _CALL.search(prompt)
    if not m or "(" not in m.group(1):
        return None
    head, _, tail = m.group(1).strip().partition("(")
    args = [a.strip() for a in tail.rsplit(")", 1)[0].split(",")] if tail.strip() != ")" else []
    bits: dict[str, tuple[str, str | None]] = {}
    aliases: dict[str, str] = {}
    for ln in prompt[: m.start()].splitlines():
        d = _DEF.match(ln)
        if not d:
            continue
        if d.group(2) in ("0", "1"):
            bits[d.group(2)] = (d.group(1), d.group(3))
        else:
            aliases[d.group(1)] = d.group(2)
    keyed = set(bits) == {"0", "1"} and bits["0"][0] != bits["1"][0]
    tag = re.match(r"\s*\[([a-z-]+)\]", prompt)
    return Problem(
        alias=head.strip(),
        args=args,
        digits=(bits["0"][0], bits["1"][0]) if keyed else CIRCLED,
        notes=(bits["0"][1], bits["1"][1]) if keyed else (None, None),
        aliases=aliases,
        tag=tag.group(1) if tag else None,
        keyed=keyed,
    )


def encode(n: int, digits: tuple[str, str]) -> str:
    s = "".join(digits[int(c)] for c in bin(abs(n))[2:])
    return "-" + s if n < 0 else s


def _match_symbol(gs: list[str], i: int, symbols: list[list[str]]) -> int:
    """Graphemes taken by the symbol at gs[i] (longest first), 0 when none starts there."""
    for sym in symbols:
        if gs[i : i + len(sym)] == sym:
            return len(sym)
    return 0


def decode(text: str, digits: tuple[str, str]) -> int | None:
    """A whole argument in notation (optional '-') or decimal; None when it is neither."""
    t = text.strip()
    if re.fullmatch(r"-?\d+", t) and not any(d in t for d in digits):
        return int(t)
    neg = t.startswith("-")
    gs, syms = graphemes(t[neg:]), [graphemes(d) for d in digits]
    i, bits = 0, ""
    while i < len(gs):
        for bit, sym in enumerate(syms):
            if gs[i : i + len(sym)] == sym:
                bits, i = bits + str(bit), i + len(sym)
                break
        else:
            return None
    return (-1 if neg else 1) * int(bits, 2) if bits else None


def _ends_cleanly(g: str | None) -> bool:
    # A value must end at a space, the line's end or punctuation: "①⓪①x" or a symbol with a stray
    # variation selector glued on is not a value followed by chatter, it is a different token.
    return g is None or g.isspace() or (len(g) == 1 and unicodedata.category(g)[0] == "P")


def read_value(right: str, digits: tuple[str, str]) -> str | None:
    """The value at the start of an answer's right side, or None.

    true/false: the first word. Numbers: an optional '-', then the key's symbols (or decimal
    digits). Spaces inside a number are allowed only as one space per digit with at least three
    digits (`① ⓪ ①`) or as groups of four after the first group (`①⓪ ⓪①①⓪`); any other split, and
    any further value of the same kind later on the line (`true or false`, `①⓪, ①①`), means the
    response offers several candidates and gets None. Chatter without such a value is ignored."""
    text = right.strip().replace("−", "-")
    low = text.lower()
    m = re.match(r"(true|false)\b", low)
    if m:
        return None if re.search(r"\b(true|false)\b", low[m.end() :]) else m.group(1)
    gs = graphemes(text)
    syms = sorted((graphemes(d) for d in digits), key=len, reverse=True)
    i = 1 if gs[:1] == ["-"] else 0
    if i < len(gs) and _match_symbol(gs, i, syms):
        unit = lambda j: _match_symbol(gs, j, syms)  # noqa: E731
    elif i < len(gs) and gs[i] in _DIGITS:
        unit = lambda j: int(gs[j] in _DIGITS)  # noqa: E731
    else:
        return None
    groups: list[list[str]] = [[]]
    j = i
    while j < len(gs):
        n = unit(j)
        if n:
            groups[-1].append("".join(gs[j : j + n]))
            j += n
            continue
        k = j
        while k < len(gs) and gs[k] == " ":
            k += 1
        if j < k < len(gs) and unit(k):
            groups.append([])
            j = k
            continue
        break
    if not _ends_cleanly(gs[j] if j < len(gs) else None):
        return None
    sizes = [len(g) for g in groups]
    if len(sizes) > 1 and not (
        (all(s == 1 for s in sizes) and len(sizes) >= 3) or (sizes[0] <= 4 and all(s == 4 for s in sizes[1:]))
    ):
        return None
    if any(unit(k) for k in range(j, len(gs))):
        return None  # another candidate later on the line
    return ("-" if i else "") + "".join("".join(g) for g in groups)


def _candidates(lines: list[str], call: str) -> list[str]:
    out = []
    for ln in lines:
        if "=" in ln:
            left, rest = ln.split("=", 1)
            if "".join(left.split()).replace("_", "").lower().endswith(call.replace("_", "")):
                out.append(rest)
    return out


def parse_answer(prompt: str, text: str) -> str | None:
    """The value a response gives for the prompt's call, or None when it gives none (or several).

    1. Code fences, backticks and `*` are dropped; the call compares without spaces, `_` or case.
    2. Answer lines are the lines with "=" whose left side ends with the prompt's call; failing
       those, lines starting with "answer:"; failing those, a response that is one line and
       nothing but a value. Several answer lines must all give the same value.
    3. The value is read from the start of the right side by `read_value`.
    """
    p = parse_prompt(prompt)
    if p is None:
        return None
    call = "".join(p.call.split()).lower()
    clean = _FENCE.sub("", text).replace("`", "").replace("*", "")
    lines = [ln.strip() for ln in clean.splitlines() if ln.strip()]
    rights = _candidates(lines, call)
    if not rights:
        rights = [ln.split(":", 1)[1] for ln in lines if ln.lower().startswith("answer:")]
    single = not rights and len(lines) == 1
    if single:
        rights = lines
    values = {read_value(r, p.digits) for r in rights}
    if len(values) != 1:
        return None
    value = values.pop()
    if single and value is not None and "".join(rights[0].split()).lower() != value.lower():
        return None  # a lone line must be exactly a value, or echoes could score
    return value or None
