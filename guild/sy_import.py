"""`realm skill import-evals sy FILE`: the original skill server's SY eval chats as an eval set.

Input: a JSONL file, one chat a line, `{"messages": [{"role": "user", "content": PROMPT},
{"role": "assistant", "content": GOLD}], "metadata": {"level": N, ...}}`. System messages are
allowed and left out of the prompt (the eval prompt is what a user asks; intake quarantines user
prompts). The gold is one of the original's two JSON shapes (guild/sy_original.py), and the
prompt's `Return JSON:` template must ask for that shape (and for syllables exactly when the gold
has them): a file whose prompts and answers disagree is not eval data we can score honestly.
The level is `metadata.level`, else a top-level `level`, else the file name's `level_NN` /
`level-NN`; 1..50.

Output: `<home>/evalsets/sy/import-<name, or the file's sha256[:12]>/level-NN.jsonl` (named and
written by guild/evalsets.py, the same for every skill; `--select` points the guild's evals at it),
rows `{"skill", "level", "prompt", "expected", "key", "source"}`. Intake's EvalIndex reads every
`evalsets/**/*.jsonl` row with a `prompt`, so the imported prompts are quarantined once written.
Every line is checked before anything is written: each gold scores 1 and an echo of its prompt 0
through the SY scorer itself; a bad file is refused with its line numbers and leaves no folder.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from arena.intake.quarantine import quarantine_key
from guild import evalsets, sy_original
from guild.importers import EvalImportError
from guild.sy import SyGenerator

log = logging.getLogger(__name__)

MAX_ERRORS = 20
_LEVEL_IN_NAME = re.compile(r"level[_-]?0*(\d+)", re.I)


def _level(row: dict[str, Any], source: Path) -> int:
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    level = meta.get("level", row.get("level"))
    if level is None and (m := _LEVEL_IN_NAME.search(source.stem)):
        level = int(m.group(1))
    # bool is an int: `"level": true` is not a level.
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= SyGenerator.max_level:
        raise ValueError(
            f"level {level!r} is not 1..{SyGenerator.max_level} (give metadata.level, or name the"
            " file level_NN.jsonl)"
        )
    return level


def _chat(row: Any) -> tuple[str, str]:
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
        raise ValueError('not a chat: expected {"messages": [...]}')
    turns = [m for m in row["messages"] if not (isinstance(m, dict) and m.get("role") == "system")]
    roles = [m.get("role") if isinstance(m, dict) else None for m in turns]
    if roles != ["user", "assistant"]:
        raise ValueError(f"expected one user then one assistant message (besides system), got {roles}")
    prompt, gold = turns[0].get("content"), turns[1].get("content")
    if not isinstance(prompt, str) or not prompt.strip() or not isinstance(gold, str):
        raise ValueError("message contents must be strings, the prompt not empty")
    return prompt, gold


def read_item(row: Any, source: Path) -> dict[str, Any]:
    """One eval row from one chat; ValueError says what is wrong with it."""
    prompt, expected = _chat(row)
    gold = sy_original.parse_gold(expected)
    if gold is None:
        raise ValueError(
            'the assistant answer is not one of the original\'s SY shapes: {"solutions": {"1": {"word",'
            ' "syllables"}, ...}} or {"1": "WORD", ...}'
        )
    asked = sy_original.asks(prompt)
    shape = sy_original.shape_of(gold)
    with_syllables = shape == "solutions" and any("syllables" in e for e in gold["solutions"].values())
    if asked is None:
        raise ValueError("the prompt has no 'Return JSON:' template naming a shape")
    if asked != (shape, with_syllables):
        raise ValueError(
            f"the prompt asks for {asked[0]}{' with syllables' * asked[1]} but the answer is"
            f" {shape}{' with syllables' * with_syllables}"
        )
    if shape == "solutions" and len({"syllables" in e for e in gold["solutions"].values()}) > 1:
        raise ValueError("some solutions have syllables and some do not")
    scorer = SyGenerator()
    if not scorer.score(prompt, expected, expected) or scorer.score(prompt, expected, prompt):
        raise ValueError("the SY scorer cannot score this item honestly (gold must score, echo must not)")
    return {
        "skill": "sy",
        "level": _level(row, source),
        "prompt": prompt,
        "expected": expected,
        "key": "sy|" + "|".join(w.lower() for w in sy_original.words(gold)),
    }


def read_file(source: Path) -> tuple[list[dict[str, Any]], int]:
    """Every item of the file (first of each repeated prompt) and the number of repeats dropped;
    EvalImportError lists up to MAX_ERRORS bad lines."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    errors: list[str] = []
    repeats = 0
    try:
        lines = source.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalImportError(f"{source}: cannot read it as UTF-8 text ({exc})") from exc
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            item = read_item(json.loads(raw), source)
        except ValueError as exc:  # JSONDecodeError included
            errors.append(f"line {n}: {exc}")
            continue
        item["source"] = {"file": source.name, "line": n}
        key = quarantine_key(item["prompt"])
        if key in seen:
            repeats += 1  # one prompt, one eval item: a repeat would count twice in accuracy
            continue
        seen.add(key)
        items.append(item)
    if errors:
        more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
        raise EvalImportError(f"{source}: " + "; ".join(errors[:MAX_ERRORS]) + more)
    if not items:
        raise EvalImportError(f"{source}: no eval chats in it")
    return items, repeats


def import_evals(home_root: Path, source: Path, name: str | None = None) -> dict[str, Any]:
    """Import one JSONL file of the original's SY eval chats; see the module docstring."""
    source = Path(source)
    if not source.is_file():
        raise EvalImportError(f"{source}: not a file (SY evals are one JSONL file of chats)")
    items, repeats = read_file(source)
    by_level: dict[int, list[dict[str, Any]]] = {}
    for it in items:
        by_level.setdefault(it["level"], []).append(it)
    # Naming and writing are the guild's one rule for every skill's imports (guild/evalsets.py).
    try:
        version = evalsets.import_version_name(name, source.read_bytes())
    except ValueError as exc:
        raise EvalImportError(str(exc)) from exc
    paths = evalsets.write_imported(Path(home_root), "sy", version, by_level)
    log.info("imported %d SY eval items from %s as %s", len(items), source, version)
    return {
        "skill": "sy",
        "version": version,
        "path": str(paths[0].parent),
        "levels": {lv: len(rows) for lv, rows in sorted(by_level.items())},
        "items": len(items),
        "notes": [f"{repeats} repeated prompts dropped (one eval item per prompt)"] if repeats else [],
    }
