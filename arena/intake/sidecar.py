"""File names and FILE.meta.json sidecars: what intake decides before reading a quest's content."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from arena.intake.specs import SPECS
from vault.home import PRIORITIES

SIDECAR_SUFFIX = ".meta.json"
# Names a writer uses while a file is still arriving; the watcher leaves them alone.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
PROVENANCE_KEYS = ("name", "version", "license", "source_url", "split")
SIDECAR_KEYS = frozenset(
    {
        "spec",
        "priority",
        "generator",
        "generator_id",
        "generator_version",
        "skill",
        "level",
        "source",
        "description",
        "epochs",
        *PROVENANCE_KEYS,
    }
)
_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


class IntakeRefusal(Exception):
    """A file refused before its content is read; carries the validator that refused it."""

    def __init__(self, validator: str, message: str, **extra: Any):
        super().__init__(message)
        self.validator, self.message, self.extra = validator, message, extra


def is_ignored(name: str) -> bool:
    """Hidden files, temp names and sidecars are not quests (a sidecar travels with its file)."""
    return name.startswith(".") or name.endswith(PARTIAL_SUFFIXES) or name.endswith(SIDECAR_SUFFIX)


def check_name(path: Path, inbox: Path) -> None:
    """Refuse unsafe names, links and foreign file types before anything opens the file."""
    name = path.name
    if ".." in name:
        raise IntakeRefusal("intake.name", f"unsafe file name {name!r}: '..' is not allowed in a quest name")
    if name.startswith("-"):
        raise IntakeRefusal(
            "intake.name", f"unsafe file name {name!r}: a leading '-' reads as a command-line option"
        )
    if path.is_symlink():
        target = Path(path.parent, path.readlink())
        try:
            inside = target.resolve().is_relative_to(inbox.resolve())
        except OSError:
            inside = False
        where = "outside the inbox" if not inside else "inside the inbox"
        raise IntakeRefusal(
            "intake.symlink",
            f"symlink pointing {where} ({target}); copy the file itself into inbox/ (links are never followed)",
        )
    if not path.is_file():
        raise IntakeRefusal("intake.filetype", f"{name!r} is not a regular file")
    if path.suffix.lower() != ".jsonl":
        raise IntakeRefusal(
            "intake.extension",
            f"extension {path.suffix or '(none)'!r} is not accepted: quests are .jsonl files"
            " (rename it if it is JSONL)",
        )


@dataclass
class Sidecar:
    spec: str | None = None
    priority: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        d = self.data
        gen = d.get("generator")
        gen_id = d.get("generator_id") or (gen.get("id") if isinstance(gen, dict) else gen)
        gen_ver = d.get("generator_version") or (gen.get("version") if isinstance(gen, dict) else None)
        out: dict[str, Any] = {k: d[k] for k in PROVENANCE_KEYS if k in d}
        if gen_id is not None:
            out["generator"] = {"id": gen_id, "version": gen_ver}
        if "epochs" in d:
            out["epochs"] = d["epochs"]
        extra = {k: v for k, v in d.items() if k not in SIDECAR_KEYS}
        if extra:
            out["extra"] = extra
        return out


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> Sidecar:
    side = sidecar_path(path)
    if not side.exists():
        return Sidecar()
    try:
        data = orjson.loads(side.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise IntakeRefusal("intake.sidecar", f"sidecar {side.name}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise IntakeRefusal("intake.sidecar", f"sidecar {side.name}: expected a JSON object")
    spec, priority = data.get("spec"), data.get("priority")
    if spec is not None and spec not in SPECS:
        raise IntakeRefusal(
            "intake.sidecar", f"sidecar {side.name}: unknown spec {spec!r}; known specs: {', '.join(SPECS)}"
        )
    if priority is not None and priority not in PRIORITIES:
        raise IntakeRefusal(
            "intake.sidecar",
            f"sidecar {side.name}: bad priority {priority!r}; expected one of {', '.join(PRIORITIES)}",
        )
    level = data.get("level")
    if level is not None and (type(level) is not int or level < 1):
        raise IntakeRefusal("intake.sidecar", f"sidecar {side.name}: level must be an integer >= 1")
    epochs = data.get("epochs")
    if epochs is not None and (type(epochs) is not int or not 1 <= epochs <= 1000):
        raise IntakeRefusal(
            "intake.sidecar", f"sidecar {side.name}: epochs must be an integer from 1 to 1000"
        )
    return Sidecar(spec=spec, priority=priority, data=data)


def safe_name(filename: str) -> str:
    """An upload's name made safe for the inbox: no folders, no '..', no leading '-' or '.'."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE.sub("_", base).replace("..", "_").lstrip("-.")
    return base[:200] or "upload.jsonl"
