"""BIN: binary arithmetic in circled notation (⓪ = 0, ① = 1), 30 levels.

Prompt `Compute: op(a, b)`, answer `op(a, b) = result`, computed exactly with Python ints.
Operand width by level: L1 = 2 bits, L2 = 3, ..., L29 = 30, L30 = 32.

Which level unlocks which operation (OPS below is the source of truth):
  L1  add, increment, decrement, tobinary (decimal argument), todecimal   (2-bit operands)
  L2  subtract (a >= b), multiply_by_2
  L3  divide_by_2 (floor)
  L4  multiply
  L5  divide (the original's integer division: the quotient, rounded down; b >= 1)
  L6  equals, lessthan, greaterthan  (answer `true` / `false`)
  L10 minimum, maximum
  L12 signed numbers (`-①⓪`): the original's add_signed, subtract_signed, multiply_signed take
      negative operands, as do negate, absolute_value, sign_of (answer -①, ⓪ or ①) and the
      comparisons; add, subtract, multiply and divide stay unsigned, as in the original.
From L8, 75% of problems speak the original's symbol language (generator v2): a `Symbol Key:`
block names two symbols for 0 and 1, each line with a parenthesised note, drawn from graphemes of
one or several code points (⬆️, ZWJ sequences, keycaps); an `Operations:` block maps aliases
(syllable words or emoji such as ✖️🔢) to the operation and one or two others of the level; the
`Compute:` line and the answer use the alias. Parsing and reading live in `guild/bin_symbols.py`.
Why these levels: the original introduces symbols after plain binary is learnt and signed forms
with the wider words; we keep v1's L8 and L12 so that progress measured on v1 still means the same.
Difficulty tags are independent of level: `[verify]` adds `Verification: 2 + 3 = 5` (decimal) after
the answer line, `[show-work]` adds a `Steps:` line before it, `[trace]` adds per-bit carry (or
borrow) lines before it. Untagged share: 85% at L1-5, falling linearly to 15% at L26-30.

Why L1 has five operations: 2-bit add alone is 16 problems. With five operations L1 has 31
distinct problems. Eval prompts are held out of training exactly (guild/evalsets.py explains why the
problems behind them are not).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from guild.bin_symbols import CIRCLED, Problem, decode, encode, parse_answer, parse_prompt, render_prompt
from guild.generators import register

__all__ = ["CIRCLED", "OPS", "BinGenerator", "encode", "parse_answer", "solve"]

# Symbols for the symbol language, one grapheme each, none a digit, '-', '=', '*' or '_'. SHORT are
# single code points; WIDE have several (variation selector 16, ZWJ sequences, keycaps), the forms
# the original uses. A pair that would push a problem past WIDE_MAX_BYTES falls back to NARROW, so
# that no level grows past what v1's circled digits already needed in DIO's 2,048-token context.
NARROW = tuple("●○■□▲△◆◇★☆♠♣♥♦✦✧◐◑♪♫")  # 3 UTF-8 bytes each, like ⓪ and ①
SHORT = NARROW + ("🔴", "🔵", "🥵", "🥶", "🌕", "🌑")
WIDE = (
    "⬆️", "⬇️", "❤️", "☀️", "❄️", "✔️", "☁️", "✖️",
    "👨‍👩‍👧", "🏳️‍🌈", "🐻‍❄️", "🧑‍🚀", "👁️‍🗨️", "❤️‍🔥",
    "#️⃣", "5️⃣", "7️⃣",
)  # fmt: skip
WIDE_MAX_BYTES = 1800
# Emoji aliases for operations (one or two graphemes, never a key symbol).
OP_EMOJI = ("🔢", "➕", "➖", "➗", "🔀", "⚖️", "🔼", "🔽", "🧮", "🌀", "🎲")
NOTES = (("zero bit", "one bit"), ("off", "on"), ("the digit 0", "the digit 1"), ("empty", "full"))
SIGNED_FROM = 12
SYMBOLS_FROM = 8
# Operations whose operands stay non-negative at every level (the *_signed forms carry the sign).
UNSIGNED = {"add", "subtract", "multiply", "divide", "divide_by_2", "tobinary", "todecimal"}


@dataclass(frozen=True)
class Op:
    name: str
    arity: int
    unlock: int
    out: str  # "num" (in notation), "dec" (decimal), "bool", "sign"
    sym: str  # verification operator


OPS = (
    Op("add", 2, 1, "num", "+"),
    Op("increment", 1, 1, "num", "+"),
    Op("decrement", 1, 1, "num", "-"),
    Op("tobinary", 1, 1, "num", "="),
    Op("todecimal", 1, 1, "dec", "="),
    Op("subtract", 2, 2, "num", "-"),
    Op("multiply_by_2", 1, 2, "num", "×"),
    Op("divide_by_2", 1, 3, "num", "÷"),
    Op("multiply", 2, 4, "num", "×"),
    Op("divide", 2, 5, "num", "÷"),
    Op("equals", 2, 6, "bool", "=="),
    Op("lessthan", 2, 6, "bool", "<"),
    Op("greaterthan", 2, 6, "bool", ">"),
    Op("minimum", 2, 10, "num", "min"),
    Op("maximum", 2, 10, "num", "max"),
    Op("negate", 1, SIGNED_FROM, "num", "neg"),
    Op("absolute_value", 1, SIGNED_FROM, "num", "abs"),
    Op("sign_of", 1, SIGNED_FROM, "sign", "sign"),
    Op("add_signed", 2, SIGNED_FROM, "num", "+"),
    Op("subtract_signed", 2, SIGNED_FROM, "num", "-"),
    Op("multiply_signed", 2, SIGNED_FROM, "num", "×"),
)
OP_BY_NAME = {op.name: op for op in OPS}
TAGS = ("verify", "show-work", "trace")
CARRY_OPS = {"add", "increment", "subtract", "decrement", "add_signed", "subtract_signed"}


def bits_for(level: int) -> int:
    return 32 if level >= 30 else level + 1


def ops_for(level: int) -> list[Op]:
    return [op for op in OPS if op.unlock <= level]


def untagged_share(level: int) -> float:
    if level <= 5:
        return 0.85
    if level >= 26:
        return 0.15
    return 0.85 - 0.70 * (level - 5) / 21


def _alias(rng: random.Random) -> str:
    cons, vows = "bdfgklmnprstvz", "aeiou"
    return "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(2, 3)))


def _operands(rng: random.Random, op: Op, level: int) -> list[int]:
    w = bits_for(level)
    signed = level >= SIGNED_FROM and op.name not in UNSIGNED
    vals = [rng.randrange(0, 1 << w) for _ in range(op.arity)]
    if signed:
        vals = [-v if rng.random() < 0.5 else v for v in vals]
    if op.name == "subtract" and vals[0] < vals[1]:
        vals.reverse()
    if op.name == "divide":  # a divisor about half as wide, or most quotients would be 0
        vals[1] = rng.randrange(1, 1 << max(1, (w + 1) // 2))
    if op.name == "decrement" and not signed and vals[0] == 0:
        vals[0] = rng.randrange(1, 1 << w)
    if op.name == "equals" and rng.random() < 0.4:
        vals[1] = vals[0]  # otherwise "false" would be the answer almost always
    if op.name in ("negate", "absolute_value", "sign_of") and rng.random() < 0.1:
        vals[0] = 0
    return vals


def _apply(op: Op, v: list[int]) -> int | bool:
    a = v[0]
    b = v[1] if len(v) > 1 else 0
    return {
        "add": lambda: a + b,
        "increment": lambda: a + 1,
        "decrement": lambda: a - 1,
        "tobinary": lambda: a,
        "todecimal": lambda: a,
        "subtract": lambda: a - b,
        "multiply_by_2": lambda: a * 2,
        "divide_by_2": lambda: a // 2,
        "multiply": lambda: a * b,
        "divide": lambda: a // b,
        "add_signed": lambda: a + b,
        "subtract_signed": lambda: a - b,
        "multiply_signed": lambda: a * b,
        "equals": lambda: a == b,
        "lessthan": lambda: a < b,
        "greaterthan": lambda: a > b,
        "minimum": lambda: min(a, b),
        "maximum": lambda: max(a, b),
        "negate": lambda: -a,
        "absolute_value": lambda: abs(a),
        "sign_of": lambda: (a > 0) - (a < 0),
    }[op.name]()


def _verification(op: Op, v: list[int], r: int | bool) -> str:
    a = v[0]
    b = v[1] if len(v) > 1 else None
    if op.name in ("increment", "decrement"):
        return f"{a} {op.sym} 1 = {r}"
    if op.name in ("tobinary", "todecimal"):
        parts = [str(1 << i) for i in reversed(range(a.bit_length())) if a >> i & 1] or ["0"]
        return f"{' + '.join(parts)} = {a}"
    if op.name == "multiply_by_2":
        return f"{a} × 2 = {r}"
    if op.name == "divide_by_2":
        return f"{a} ÷ 2 = {r} (rounded down)"
    if op.name == "divide":
        return f"{a} ÷ {b} = {r} (rounded down)"
    if op.out == "bool":
        return f"{a} {op.sym} {b} is {str(r).lower()}"
    if op.name in ("minimum", "maximum"):
        return f"{op.sym}({a}, {b}) = {r}"
    if op.name == "negate":
        return f"-({a}) = {r}"
    if op.name == "absolute_value":
        return f"|{a}| = {r}"
    if op.name == "sign_of":
        return f"sign({a}) = {r}"
    return f"{a} {op.sym} {b} = {r}"


def _trace(op: Op, v: list[int], digits: tuple[str, str]) -> list[str]:
    """Per-bit carry (add) or borrow (subtract) lines, least significant bit first."""
    a = v[0]
    b = v[1] if op.arity == 2 else 1
    width = max(a.bit_length(), b.bit_length(), 1)
    lines, c = [], 0
    d = digits
    for i in range(width):
        x, y = a >> i & 1, b >> i & 1
        if op.name in ("add", "increment", "add_signed"):
            s, c2 = (x + y + c) & 1, (x + y + c) >> 1
            lines.append(f"bit {i}: {d[x]} + {d[y]} + carry {d[c]} = {d[s]}, carry {d[c2]}")
        else:
            diff = x - y - c
            s, c2 = diff & 1, int(diff < 0)
            lines.append(f"bit {i}: {d[x]} - {d[y]} - borrow {d[c]} = {d[s]}, borrow {d[c2]}")
        c = c2
    if c and op.name in ("add", "increment", "add_signed"):
        lines.append(f"bit {width}: carry {d[1]}")
    return lines


def _language(rng: random.Random, op: Op, level: int) -> Problem:
    """The original's symbol language: a noted Symbol Key and an Operations block with distractors."""
    zero, one = rng.sample(WIDE if rng.random() < 0.5 else SHORT, 2)
    others = [o.name for o in ops_for(level) if o.name != op.name]
    names = [op.name, *rng.sample(others, rng.randint(1, 2))]
    rng.shuffle(names)
    aliases: dict[str, str] = {}
    for name in names:
        alias = ""
        while not alias or alias in aliases:
            emoji = rng.random() < 0.4
            alias = "".join(rng.sample(OP_EMOJI, rng.randint(1, 2))) if emoji else _alias(rng)
        aliases[alias] = name
    mine = next(a for a, n in aliases.items() if n == op.name)
    return Problem(
        alias=mine, args=[], digits=(zero, one), notes=rng.choice(NOTES), aliases=aliases, keyed=True
    )


def _value(op: Op, result: int | bool, digits: tuple[str, str]) -> str:
    if op.out == "bool":
        return "true" if result else "false"
    if op.out == "dec":
        return str(result)
    return encode(int(result), digits)


def _render(p: Problem, op: Op, vals: list[int], result: int | bool) -> tuple[str, str]:
    """(prompt, expected) for a problem whose notation, aliases and tag are chosen."""
    p.args = [str(x) if op.name == "tobinary" else encode(x, p.digits) for x in vals]
    answer: list[str] = []
    if p.tag == "show-work":
        decoded = [f"{p.args[i]} = {vals[i]}" for i in range(len(vals)) if op.name != "tobinary"]
        answer.append("Steps: " + "; ".join([*decoded, _verification(op, vals, result)]))
    elif p.tag == "trace":
        answer += _trace(op, vals, p.digits)
    answer.append(f"{p.call} = {_value(op, result, p.digits)}")
    if p.tag == "verify":
        answer.append(f"Verification: {_verification(op, vals, result)}")
    return render_prompt(p), "\n".join(answer)


def solve(prompt: str) -> str | None:
    """The gold answer line (`call = value`) computed from the prompt alone, or None when the prompt
    names an operation we do not know or arguments we cannot read (an imported item, say)."""
    p = parse_prompt(prompt)
    op = OP_BY_NAME.get(p.op_name) if p else None
    if p is None or op is None or len(p.args) != op.arity:
        return None
    vals = [decode(a, p.digits) for a in p.args]
    if any(v is None for v in vals) or (op.name == "divide" and vals[1] == 0):
        return None
    return f"{p.call} = {_value(op, _apply(op, vals), p.digits)}"  # type: ignore[arg-type]


class BinGenerator:
    id = "bin"
    version = 2
    max_level = 30

    def make(self, rng: random.Random, level: int) -> dict[str, Any]:
        op = rng.choice(ops_for(level))
        vals = _operands(rng, op, level)
        result = _apply(op, vals)
        problem = Problem(alias=op.name, args=[])
        if level >= SYMBOLS_FROM and rng.random() < 0.75:
            problem = _language(rng, op, level)
        if rng.random() >= untagged_share(level):
            usable = [t for t in TAGS if t != "trace" or (op.name in CARRY_OPS and min(vals) >= 0)]
            problem.tag = rng.choice(usable)
            if op.name in ("subtract", "subtract_signed", "decrement") and int(result) < 0:
                problem.tag = "verify" if problem.tag == "trace" else problem.tag
        prompt, expected = _render(problem, op, vals, result)
        if (
            problem.digits[0] not in (*NARROW, *CIRCLED)
            and len((prompt + expected).encode()) > WIDE_MAX_BYTES
        ):
            problem.digits = tuple(rng.sample(NARROW, 2))  # type: ignore[assignment]
            prompt, expected = _render(problem, op, vals, result)
        return {"prompt": prompt, "expected": expected, "key": f"bin|{op.name}|{'|'.join(map(str, vals))}"}

    def level_info(self, level: int) -> dict[str, Any]:
        return {
            "level": level,
            "bits": bits_for(level),
            "operations": [op.name for op in ops_for(level)],
            "new_operations": [op.name for op in OPS if op.unlock == level],
            "signed": level >= SIGNED_FROM,
            "symbol_language": level >= SYMBOLS_FROM,
            "untagged_share": round(untagged_share(level), 3),
        }

    def provenance(self) -> dict[str, Any]:
        return {"data": "none: problems are computed with Python integers", "licence": "MIT (this project)"}

    def score(self, prompt: str, expected: str, response: str) -> bool:
        gold = parse_answer(prompt, expected)
        return gold is not None and parse_answer(prompt, response) == gold


register("bin")(BinGenerator)
