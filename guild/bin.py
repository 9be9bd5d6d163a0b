"""BIN: binary arithmetic in circled notation (⓪ = 0, ① = 1), 30 levels.

Prompt `Compute: op(a, b)`, answer `op(a, b) = result`, computed exactly with Python ints.
Operand width by level: L1 = 2 bits, L2 = 3, ..., L29 = 30, L30 = 32.

Which level unlocks which operation (OPS below is the source of truth):
  L1  add, increment, decrement, tobinary, todecimal   (2-bit operands)
  L2  subtract (a >= b), multiply_by_2
  L3  divide_by_2 (floor)
  L4  multiply
  L6  equals, lessthan, greaterthan  (answer `true` / `false`)
  L10 minimum, maximum
  L12 signed forms: operands may be negative (`-①⓪`), subtract may go below zero;
      negate, absolute_value, sign_of (answer -①, ⓪ or ①)
From L8, 75% of problems speak a symbol language: two random symbols stand for 0 and 1 and the
operation gets a random alias, all given in a `Symbol Key:` block before `Compute:`.
Difficulty tags are independent of level: `[verify]` adds `Verification: 2 + 3 = 5` (decimal) after
the answer line, `[show-work]` adds a `Steps:` line before it, `[trace]` adds per-bit carry (or
borrow) lines before it. Untagged share: 85% at L1-5, falling linearly to 15% at L26-30.

Why L1 has five operations: 2-bit add alone is 16 problems. With five operations L1 has 31
distinct problems. Eval prompts are held out of training exactly (guild/evalsets.py explains why the
problems behind them are not).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from guild.generators import register

CIRCLED = ("⓪", "①")
# Symbol pairs for the symbol language: single code points, none of them a digit, '-' or '='.
SYMBOLS = "●○■□▲△◆◇★☆♠♣♥♦✦✧◐◑♪♫"
SIGNED_FROM = 12
SYMBOLS_FROM = 8


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
    Op("equals", 2, 6, "bool", "=="),
    Op("lessthan", 2, 6, "bool", "<"),
    Op("greaterthan", 2, 6, "bool", ">"),
    Op("minimum", 2, 10, "num", "min"),
    Op("maximum", 2, 10, "num", "max"),
    Op("negate", 1, SIGNED_FROM, "num", "neg"),
    Op("absolute_value", 1, SIGNED_FROM, "num", "abs"),
    Op("sign_of", 1, SIGNED_FROM, "sign", "sign"),
)
TAGS = ("verify", "show-work", "trace")
CARRY_OPS = {"add", "increment", "subtract", "decrement"}


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


def encode(n: int, digits: tuple[str, str]) -> str:
    s = "".join(digits[int(c)] for c in bin(abs(n))[2:])
    return "-" + s if n < 0 else s


def _alias(rng: random.Random) -> str:
    cons, vows = "bdfgklmnprstvz", "aeiou"
    return "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(2, 3)))


def _operands(rng: random.Random, op: Op, level: int) -> list[int]:
    w = bits_for(level)
    signed = level >= SIGNED_FROM and op.name not in ("divide_by_2", "tobinary", "todecimal")
    vals = [rng.randrange(0, 1 << w) for _ in range(op.arity)]
    if signed:
        vals = [-v if rng.random() < 0.5 else v for v in vals]
    if op.name in ("subtract",) and not signed and vals[0] < vals[1]:
        vals.reverse()
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
        if op.name in ("add", "increment"):
            s, c2 = (x + y + c) & 1, (x + y + c) >> 1
            lines.append(f"bit {i}: {d[x]} + {d[y]} + carry {d[c]} = {d[s]}, carry {d[c2]}")
        else:
            diff = x - y - c
            s, c2 = diff & 1, int(diff < 0)
            lines.append(f"bit {i}: {d[x]} - {d[y]} - borrow {d[c]} = {d[s]}, borrow {d[c2]}")
        c = c2
    if c and op.name in ("add", "increment"):
        lines.append(f"bit {width}: carry {d[1]}")
    return lines


class BinGenerator:
    id = "bin"
    version = 1
    max_level = 30

    def make(self, rng: random.Random, level: int) -> dict[str, Any]:
        op = rng.choice(ops_for(level))
        vals = _operands(rng, op, level)
        result = _apply(op, vals)
        symbolic = level >= SYMBOLS_FROM and rng.random() < 0.75
        digits, name = CIRCLED, op.name
        head: list[str] = []
        if symbolic:
            zero, one = rng.sample(SYMBOLS, 2)
            digits, name = (zero, one), _alias(rng)
            head = ["Symbol Key:", f"{zero} = 0", f"{one} = 1", f"{name} = {op.name}"]
        args = [str(x) if op.name == "tobinary" else encode(x, digits) for x in vals]
        call = f"{name}({', '.join(args)})"
        if op.out == "bool":
            value = "true" if result else "false"
        elif op.out == "dec":
            value = str(result)
        else:
            value = encode(int(result), digits)
        tag = None
        if rng.random() >= untagged_share(level):
            usable = [t for t in TAGS if t != "trace" or (op.name in CARRY_OPS and min(vals) >= 0)]
            tag = rng.choice(usable)
            if op.name in ("subtract", "decrement") and tag == "trace" and int(result) < 0:
                tag = "verify"
        prompt_lines = ([f"[{tag}]"] if tag else []) + head + [f"Compute: {call}"]
        answer: list[str] = []
        if tag == "show-work":
            decoded = [f"{args[i]} = {vals[i]}" for i in range(len(vals)) if op.name != "tobinary"]
            answer.append("Steps: " + "; ".join([*decoded, _verification(op, vals, result)]))
        elif tag == "trace":
            answer += _trace(op, vals, digits)
        answer.append(f"{call} = {value}")
        if tag == "verify":
            answer.append(f"Verification: {_verification(op, vals, result)}")
        return {
            "prompt": "\n".join(prompt_lines),
            "expected": "\n".join(answer),
            "key": f"bin|{op.name}|{'|'.join(map(str, vals))}",
        }

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


# --- scoring --------------------------------------------------------------------------------------
# The documented rule (also in docs of `realm skill check`):
# 1. Code fences, backticks, `*` and `_` emphasis are dropped; comparisons ignore case and spaces.
# 2. The answer line is the first line with "=" whose left side ends with the prompt's call
#    (so "Answer: add(①, ①) = ①⓪" counts); failing that, a line starting with "answer:"; failing that,
#    a response that is one line and nothing but a value.
# 3. The value is read from the start of the right side: for true/false the first word; for numbers
#    the run of characters of the answer's notation (its two digits, or 0-9, and a leading '-'),
#    spaces between them ignored. Anything after the value (chatter) is ignored.
_FENCE = re.compile(r"```[a-zA-Z]*")


def _notation(prompt: str) -> tuple[str, str]:
    key = dict(re.findall(r"^\s*(\S)\s*=\s*([01])\s*$", prompt, flags=re.M))
    inv = {v: k for k, v in key.items()}
    return (inv["0"], inv["1"]) if set(inv) == {"0", "1"} else CIRCLED


def _call(prompt: str) -> str | None:
    m = re.search(r"Compute:\s*(.+)", prompt)
    return "".join(m.group(1).split()).lower() if m else None


def _read_value(text: str, alphabet: str, words: bool) -> str:
    text = text.strip().replace("−", "-")
    if words:
        m = re.match(r"[a-zA-Z]+", text)
        return m.group(0).lower() if m else ""
    out = []
    for ch in text:
        if ch.isspace():
            continue
        if ch in alphabet and (ch != "-" or not out):
            out.append(ch)
        else:
            break
    return "".join(out)


def parse_answer(prompt: str, text: str) -> str | None:
    """The value a response gives for the prompt's call, or None when it gives none."""
    call = _call(prompt)
    if call is None:
        return None
    clean = _FENCE.sub("", text).replace("`", "").replace("*", "")
    lines = [ln.strip() for ln in clean.splitlines() if ln.strip()]
    digits = _notation(prompt)
    right = None
    for ln in lines:
        if "=" in ln:
            left, rest = ln.split("=", 1)
            if "".join(left.split()).replace("_", "").lower().endswith(call.replace("_", "")):
                right = rest
                break
    if right is None:
        right = next((ln.split(":", 1)[1] for ln in lines if ln.lower().startswith("answer:")), None)
    single = right is None and len(lines) == 1
    if single:
        right = lines[0]
    if right is None:
        return None
    probe = right.strip().lower()
    words = probe.startswith(("true", "false"))
    alphabet = "0123456789-" if re.match(r"-?\d", probe) else digits[0] + digits[1] + "-"
    value = _read_value(right, alphabet, words)
    if single and "".join(right.split()).lower() != value:
        return None  # a lone line must be exactly a value, or echoes could score
    return value or None
