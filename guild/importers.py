"""Importers of the original system's eval data: `realm skill import-evals SKILL SOURCE`.

One importer per skill, registered in IMPORTERS under the skill's id. An importer reads the
original's files, checks that our scorer reads every gold answer, and writes them as an eval-set
version of their own (`<home>/evalsets/<skill>/import-<...>/level-NN.jsonl`), which intake
quarantines like every eval set. The CLI's `--select` then points the guild's evals at it
(`guild.evalsets.select_version`), the same way for every skill.

An importer is `fn(home_root, source, **options) -> dict`: the dict is JSON (the CLI prints it) and
holds at least `skill`, `version` (the folder name under `evalsets/<skill>/`) and `items`. Options a
skill understands (BIN: `name`) are keyword arguments. It raises EvalImportError, saying which file
and which part of it, on data it cannot take as written. Importers load lazily, so the CLI does not
import every skill's module to list them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any


class EvalImportError(ValueError):
    """The original's data cannot be imported as written; the message names the file and the part."""


Importer = Callable[..., dict[str, Any]]


def _lazy(module: str, func: str) -> Importer:
    def run(home_root: Path, source: Path, **options: Any) -> dict[str, Any]:
        return getattr(importlib.import_module(module), func)(home_root, source, **options)

    run.target = (module, func)  # type: ignore[attr-defined]  # for the CLI's option check
    return run


IMPORTERS: dict[str, Importer] = {
    "bin": _lazy("guild.bin_import", "import_bin"),
    "sy": _lazy("guild.sy_import", "import_evals"),
}


def accepts(skill_id: str, option: str) -> bool:
    """Whether the skill's importer takes `option` (the CLI refuses an option it would not use)."""
    module, func = IMPORTERS[skill_id].target  # type: ignore[attr-defined]
    return option in inspect.signature(getattr(importlib.import_module(module), func)).parameters
