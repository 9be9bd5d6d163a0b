"""File names and FILE.meta.json sidecars: what intake decides before reading a quest's content.

A sidecar is checked by the realm's one typed mechanism (`sentinels.typed.convert` on the
`SidecarFile` struct below, each rule next to its field), so a refusal reads
"sidecar F.jsonl.meta.json: key 'level': expected an integer from 1 to 1000 (a skill level), got 0".
Keys the struct does not name are not refused: they are provenance, kept as lineage `extra`
(the guild's planner writes its own there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import orjson

from arena.intake.specs import SPECS
from sentinels.typed import TypedError, convert
from vault.home import PRIORITIES

SIDECAR_SUFFIX = ".meta.json"
# Names a writer uses while a file is still arriving; the watcher leaves them alone.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
PROVENANCE_KEYS = ("name", "version", "license", "source_url", "split")
Scalar = str | int | float


class GeneratorRef(msgspec.Struct, frozen=True):
    id: Scalar
    version: Scalar | None = None


class SidecarFile(msgspec.Struct, frozen=True, kw_only=True):
    """FILE.meta.json: every key optional."""

    spec: Annotated[Literal[tuple(SPECS)], msgspec.Meta(description="a quest spec")] | None = None  # type: ignore[valid-type]
    priority: Literal[PRIORITIES] | None = None  # type: ignore[valid-type]
    generator: str | GeneratorRef | None = None
    generator_id: Scalar | None = None
    generator_version: Scalar | None = None
    skill: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    # No skill has 1,000 levels: a larger number is a mistake, not a hard quest.
    level: Annotated[int, msgspec.Meta(ge=1, le=1000, description="a skill level")] | None = None
    source: str | None = None
    description: str | None = None
    epochs: Annotated[int, msgspec.Meta(ge=1, le=1000, description="passes over the file")] | None = None
    name: Scalar | None = None
    version: Scalar | None = None
    license: str | None = None
    source_url: str | None = None
    split: str | None = None


SIDECAR_KEYS = frozenset(f.encode_name for f in msgspec.structs.fields(SidecarFile))
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
    if name.endswith(SIDECAR_SUFFIX):
        # Intake only takes a sidecar alone once its data file has failed to arrive (inbox.leftovers).
        data = name[: -len(SIDECAR_SUFFIX)]
        raise IntakeRefusal(
            "intake.sidecar",
            f"sidecar {name} arrived without its data file {data!r}, which never came;"
            " drop the data file with its sidecar (then `realm quest retry ID` brings the sidecar back)",
        )
    if path.is_dir():
        raise IntakeRefusal(
            "intake.filetype",
            f"{name!r} is a directory, not a quest file: put the .jsonl files themselves into inbox/"
            " (folders are never searched)",
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
    try:
        typed = convert(data, SidecarFile, source=f"sidecar {side.name}")
    except TypedError as exc:
        raise IntakeRefusal("intake.sidecar", str(exc), key=exc.key) from exc
    return Sidecar(spec=typed.spec, priority=typed.priority, data=data)


def safe_name(filename: str) -> str:
    """An upload's name made safe for the inbox: no folders, no '..', no leading '-' or '.'."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE.sub("_", base).replace("..", "_").lstrip("-.")
    return base[:200] or "upload.jsonl"
