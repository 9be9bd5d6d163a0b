"""Import the original BIN skill server's eval files as an eval-set version of their own.

`realm skill import-evals bin DIR` reads every `level_NN.json` in DIR:
    {"level": N, "bits": B, "problems": [{"prompt": str, "expected": str, "metadata": {...}}]}
and writes `<home>/evalsets/bin/import-<name or content hash>/level-NN.jsonl` (rows `{"skill",
"level", "prompt", "expected", "key", "metadata"}`, the original's metadata plus `bits` and the
source file's name). Every gold answer must read as a value under our scorer
(`guild.bin_symbols.parse_answer`), or the import stops naming the file and problem: an eval item
that nothing can pass would silently cap the level. Where our operations compute the problem too
(`guild.bin.solve`), a gold that disagrees is counted in the result's notes, and the original's
gold stands.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from guild import evalsets
from guild.bin import BinGenerator, solve
from guild.bin_symbols import parse_answer, parse_prompt
from guild.importers import EvalImportError

log = logging.getLogger(__name__)

_NAME = re.compile(r"level_(\d+)\.json")


def _err(path: Path, key: str, problem: str) -> EvalImportError:
    return EvalImportError(f"{path}: key '{key}': {problem}")


def _problem_row(path: Path, level: int, bits, i: int, prob) -> tuple[dict, bool]:
    where = f"problems[{i}]"
    if not isinstance(prob, dict):
        raise _err(path, where, "expected an object with prompt, expected and metadata")
    for key in ("prompt", "expected"):
        if not isinstance(prob.get(key), str) or not prob[key].strip():
            raise _err(path, f"{where}.{key}", "expected a non-empty string")
    meta = prob.get("metadata") or {}
    if not isinstance(meta, dict):
        raise _err(path, f"{where}.metadata", "expected an object")
    prompt, expected = prob["prompt"], prob["expected"]
    gold = parse_answer(prompt, expected)
    if gold is None:
        raise _err(
            path, f"{where}.expected", f"our scorer reads no answer to the prompt's call in {expected!r}"
        )
    ours = solve(prompt)
    agrees = ours is None or parse_answer(prompt, ours) == gold
    p = parse_prompt(prompt)
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:16]
    key = f"bin|{p.op_name}|import-{digest}" if p else f"bin|import|{digest}"
    row = {
        "skill": "bin",
        "level": level,
        "prompt": prompt,
        "expected": expected,
        "key": key,
        "metadata": {**meta, "bits": bits, "source": path.name},
    }
    return row, agrees


def import_bin(home_root: Path, source: Path, name: str | None = None) -> dict[str, Any]:
    """Import every level_NN.json in `source` (a folder, or one such file); see the module docstring."""
    source = Path(source)
    files = sorted(source.glob("level_*.json")) if source.is_dir() else [source]
    files = [f for f in files if _NAME.fullmatch(f.name)]
    if not files:
        raise _err(source, "level_NN.json", "no level_NN.json files found")
    levels: dict[int, list[dict]] = {}
    content = hashlib.sha256()
    disagree = 0
    for path in files:
        raw = path.read_bytes()
        content.update(path.name.encode() + b"\0" + raw)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise _err(path, "(file)", f"not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise _err(path, "(file)", "expected an object with level, bits and problems")
        level = doc.get("level")
        if not isinstance(level, int) or not 1 <= level <= BinGenerator.max_level:
            raise _err(path, "level", f"expected an integer in 1..{BinGenerator.max_level}")
        if level in levels:
            raise _err(path, "level", f"level {level} appears in two files")
        problems = doc.get("problems")
        if not isinstance(problems, list) or not problems:
            raise _err(path, "problems", "expected a non-empty list")
        rows = []
        for i, prob in enumerate(problems):
            row, agrees = _problem_row(path, level, doc.get("bits"), i, prob)
            rows.append(row)
            disagree += not agrees
        levels[level] = rows
    # Every file is checked before anything is written: a refused import leaves no folder behind.
    version = evalsets.import_version_name(name, content.digest())
    paths = evalsets.write_imported(Path(home_root), "bin", version, levels)
    notes = []
    if disagree:
        notes.append(f"{disagree} gold answers differ from our computation (kept as the original wrote them)")
    log.info("imported %d BIN eval items into %s", sum(map(len, levels.values())), version)
    return {
        "skill": "bin",
        "version": version,
        "path": str(paths[0].parent),
        "levels": {lv: len(rows) for lv, rows in sorted(levels.items())},
        "items": sum(map(len, levels.values())),
        "notes": notes,
    }
