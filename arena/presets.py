"""Hero presets: the named real models a realm can train instead of DIO (`configs/heroes/<name>.yaml`).

Owns the preset file schema, finding presets (`list_presets`, `get_preset`), the config layer a preset
puts under the user's realm.yaml (`preset_layer`, called by `sentinels.config.load_config`) and deciding
which hero a config names (`resolve_hero`: DIO, a `hero.base_model` folder, or a preset's folder).

A preset file holds one top-level `preset:` mapping; `configs/heroes/dio.yaml`, DIO's description, has
none, which is how the two kinds of file in that folder are told apart. A preset names a LOCAL model
folder (`model_dir`, where `~` and `$REALM_MODELS` (default `~/models`) are expanded): nothing is ever
downloaded at run time; `hf_repo` only tells the user what to fetch themselves.

Must stay importable without torch or transformers: every CLI that loads the config and every Tavern
snapshot (the hero card's label) reads presets. Must not build models, choose memory profiles
(arena/profiles.py) or touch adapters (arena/adapters.py).
"""

from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from sentinels.config import LoraConfig, TrainingConfig
from sentinels.typed import TypedError, convert

log = logging.getLogger("realm.presets")

PRESETS_DIR = Path("configs") / "heroes"
DIO = "dio"
# What `$REALM_MODELS` means when the environment does not set it.
DEFAULT_MODELS_DIR = "~/models"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

Profile = Literal["auto", "full", "lora", "qlora"]
Optimizer = Literal["adamw", "adamw_8bit", "paged_adamw_8bit"]
GB = Annotated[float, msgspec.Meta(ge=0, description="gigabytes")]


class PresetError(ValueError):
    """A preset that is unknown or cannot be read; the message names it and what to do."""


class PresetFileError(TypedError, PresetError):
    """A preset file key that does not fit the schema: names the file and the key."""


class _Part(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every mapping in a preset file: a key it does not declare is an error."""


class PresetNeeds(_Part):
    """Memory estimates in GB on a CUDA GPU (arena.profiles.estimate_bytes; a test keeps them equal)."""

    full_gb: GB
    lora_gb: GB
    qlora_gb: GB


class PresetBody(_Part):
    description: str
    """What the model is, and the Hugging Face repo id to download yourself."""
    model_dir: str
    """The local model folder; `~` and `$REALM_MODELS` (default ~/models) are expanded."""
    hf_repo: str
    """Informational: where the user gets the folder (`huggingface-cli download REPO --local-dir DIR`)."""
    params: Annotated[float, msgspec.Meta(gt=0, description="a parameter count")]
    """Approximate parameter count (the folder's exact count is used once it is present)."""
    needs: PresetNeeds
    label: str | None = None
    """Display name (the hero card); default: the last part of hf_repo."""
    chat_template: str | None = None
    """null: the folder tokenizer's own; `chatml`; or a Jinja template string."""
    profile: Profile = "auto"
    """Recommended memory profile, layered under the user's hero.profile."""
    lora: LoraConfig | None = None
    """Adapter shape (keys of hero.lora), layered under the user's."""
    training: TrainingConfig | None = None
    """Training defaults (keys of the training section), layered under the user's."""
    gradient_checkpointing: bool | None = None
    """Suggested hero.gradient_checkpointing (null: no suggestion)."""
    optimizer: Optimizer | None = None
    """Suggested hero.optimizer (null: no suggestion)."""


class PresetFile(_Part):
    preset: PresetBody


@dataclass(frozen=True)
class Preset:
    """One parsed preset; `written` keeps the raw lora/training mappings so only the keys the preset
    file wrote are layered (msgspec fills the rest with defaults, which must not beat the user's)."""

    name: str
    path: Path
    body: PresetBody
    written: dict[str, Any]

    @property
    def label(self) -> str:
        return self.body.label or self.body.hf_repo.rstrip("/").rsplit("/", 1)[-1]

    def folder(self, repo_root: Path) -> Path:
        return expand_model_dir(self.body.model_dir, repo_root)

    def folder_present(self, repo_root: Path) -> bool:
        return (self.folder(repo_root) / "config.json").is_file()

    def layer(self) -> dict[str, Any]:
        """The config mapping this preset puts under the user's realm.yaml."""
        hero: dict[str, Any] = {"profile": self.body.profile}
        if "lora" in self.written:
            hero["lora"] = copy.deepcopy(self.written["lora"])
        for key in ("gradient_checkpointing", "optimizer"):
            if getattr(self.body, key) is not None:
                hero[key] = getattr(self.body, key)
        out: dict[str, Any] = {"hero": hero}
        if "training" in self.written:
            out["training"] = copy.deepcopy(self.written["training"])
        return out

    def to_dict(self, repo_root: Path) -> dict[str, Any]:
        return {
            **msgspec.to_builtins(self.body),
            "name": self.name,
            "label": self.label,
            "file": str(self.path),
            "model_dir_written": self.body.model_dir,
            "model_dir": str(self.folder(repo_root)),
            "folder_present": self.folder_present(repo_root),
            # What the file wrote, not the schema's filled-in defaults (those never reach the config).
            "lora": copy.deepcopy(self.written.get("lora")),
            "training": copy.deepcopy(self.written.get("training")),
        }


@dataclass(frozen=True)
class HeroSource:
    """Which hero a config names: DIO built from its description, or a local HF folder."""

    kind: Literal["dio", "folder"]
    path: Path | None
    preset: str | None
    chat_template: str | None
    label: str


def expand_model_dir(text: str, repo_root: Path) -> Path:
    """A preset's model_dir as an absolute path: $REALM_MODELS (default ~/models), other $VARS and ~
    expanded; a relative path is from the repo root."""
    models = os.environ.get("REALM_MODELS") or DEFAULT_MODELS_DIR
    text = text.replace("${REALM_MODELS}", models).replace("$REALM_MODELS", models)
    path = Path(os.path.expandvars(text)).expanduser()
    return path if path.is_absolute() else Path(repo_root) / path


def fmt_params(n: float | None) -> str:
    """A parameter count in three digits: 2.41M, 596M, 14.8B."""
    if not n:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def read_preset(path: Path) -> Preset | None:
    """The preset in `path`, or None when the file is not a preset (no top-level `preset:`)."""
    data = _load_yaml(Path(path))
    if not isinstance(data, dict) or "preset" not in data:
        return None
    body = convert(data, PresetFile, source=str(path), error=PresetFileError).preset
    raw = data["preset"]
    written = {k: raw[k] for k in ("lora", "training") if isinstance(raw.get(k), dict)}
    return Preset(Path(path).stem, Path(path), body, written)


def list_presets(repo_root: Path) -> list[Preset]:
    """Every preset in <repo_root>/configs/heroes/, by name; a broken file raises PresetFileError."""
    out = []
    for path in sorted((Path(repo_root) / PRESETS_DIR).glob("*.yaml")):
        preset = read_preset(path)
        if preset is not None:
            out.append(preset)
    return out


def preset_names(repo_root: Path) -> list[str]:
    """Names of the preset files, without parsing them (for error messages)."""
    return [p.stem for p in sorted((Path(repo_root) / PRESETS_DIR).glob("*.yaml")) if _is_preset_file(p)]


def get_preset(name: str, repo_root: Path) -> Preset:
    """The preset `name`; PresetError naming it and listing the known ones when there is none."""
    path = Path(repo_root) / PRESETS_DIR / f"{name}.yaml"
    # A name is a file stem in the presets folder, never a path out of it.
    preset = read_preset(path) if _NAME.fullmatch(name) and path.is_file() else None
    if preset is None:
        known = ", ".join(preset_names(repo_root)) or "none"
        raise PresetError(
            f"unknown hero preset {name!r}; known presets: {known} (`realm hero list`; "
            f"presets are the files with a `preset:` mapping in {Path(repo_root) / PRESETS_DIR})"
        )
    return preset


def preset_layer(name: str, repo_root: Path) -> dict[str, Any]:
    """The config mapping preset `name` layers under the user's realm.yaml (for load_config)."""
    return get_preset(name, repo_root).layer()


def layer_under(base: dict[str, Any], top: dict[str, Any], drop_defaults: dict[str, Any] | None = None):
    """`top` deep-merged over `base` (a new dict; keys in `top` win).

    With `drop_defaults` (the built-in defaults), a leaf of `top` whose value equals its default and
    that `base` also sets does not count as written: the repo's configs/realm.yaml spells every
    default out, and those copies must not hide a preset's settings."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        default = (drop_defaults or {}).get(key, _NO_DEFAULT)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            sub = default if isinstance(default, dict) else None
            out[key] = layer_under(out[key], value, sub)
        elif drop_defaults is not None and key in out and _same(value, default):
            continue
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_hero(hero_cfg, repo_root: Path) -> HeroSource:
    """The hero `hero_cfg` (sentinels.config.HeroConfig) names.

    `hero.base_model` wins over the preset's model_dir (the preset still gives its chat template and
    label); neither means DIO. A missing folder raises arena.hero.HeroError naming the folder and the
    repo id to fetch: nothing is downloaded at run time."""
    from arena.hero import CHAT_TEMPLATE, HeroError  # torch: only where a hero is about to be built

    preset = None
    if hero_cfg.preset:
        try:
            preset = get_preset(hero_cfg.preset, repo_root)
        except PresetError as exc:
            raise HeroError(f"hero.preset: {exc}") from exc
    template = preset.body.chat_template if preset else None
    if template == "chatml":
        template = CHAT_TEMPLATE
    if hero_cfg.base_model:
        path = Path(hero_cfg.base_model).expanduser()  # relative: from the working folder, as before
        if not (path / "config.json").is_file():
            raise HeroError(f"hero.base_model {path} is not a Hugging Face model folder (no config.json)")
        label = preset.label if preset else path.name
        return HeroSource("folder", path.resolve(), preset.name if preset else None, template, label)
    if preset is not None:
        path = preset.folder(repo_root)
        if not (path / "config.json").is_file():
            raise HeroError(
                f"hero preset {preset.name!r} needs the model folder {path}, which "
                f"{'has no config.json' if path.exists() else 'does not exist'}; nothing is downloaded "
                f"at run time: fetch {preset.body.hf_repo} yourself (`huggingface-cli download "
                f"{preset.body.hf_repo} --local-dir {path}`), set REALM_MODELS to the folder holding "
                f"it, or point hero.base_model at it"
            )
        return HeroSource("folder", path.resolve(), preset.name, template, preset.label)
    return HeroSource("dio", None, None, None, hero_cfg.name)


def hero_label(hero_cfg, repo_root: Path, preset: str | None = None) -> str:
    """The hero card's model name ("Qwen3-0.6B", a base_model folder's name, or the hero's name);
    never raises: a broken preset file shows its name rather than breaking the card."""
    name = preset or hero_cfg.preset
    if name and not _NAME.fullmatch(name):
        return name
    if name:
        path = Path(repo_root) / PRESETS_DIR / f"{name}.yaml"
        try:
            return _label_of(path, path.stat().st_mtime_ns)
        except (OSError, PresetError, yaml.YAMLError):
            return name
    if hero_cfg.base_model:
        return Path(hero_cfg.base_model).expanduser().name or str(hero_cfg.base_model)
    return hero_cfg.name


@lru_cache(maxsize=64)
def _label_of(path: Path, _mtime_ns: int) -> str:
    # Keyed by mtime: the Tavern reads the label on every snapshot, the file rarely changes.
    preset = read_preset(path)
    return preset.label if preset else path.stem


def _is_preset_file(path: Path) -> bool:
    try:
        data = _load_yaml(path)
    except PresetError:
        return False
    return isinstance(data, dict) and "preset" in data


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PresetError(f"preset file {path} not found") from exc
    except yaml.YAMLError as exc:
        raise PresetFileError(str(path), "<file>", f"not valid YAML: {exc}") from exc


_NO_DEFAULT = object()


def _same(value: Any, default: Any) -> bool:
    if default is _NO_DEFAULT:
        return False
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    if isinstance(value, int | float) and isinstance(default, int | float):
        return float(value) == float(default)  # YAML 1e-3 vs 0.001, 2 vs 2.0
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return list(value) == list(default)
    return value == default
