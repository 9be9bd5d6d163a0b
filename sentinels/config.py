"""Typed realm configuration: the sentinel at the gate.

`load_config` reads `configs/realm.yaml` (or another file), applies overrides, and returns a frozen
`RealmConfig`. Every key is checked against the dataclasses below: an unknown key, a wrong type or a
value outside its allowed set raises `ConfigError`, which names the file, the dotted key and what is
allowed. The CLI turns that into exit code 2.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "realm.yaml"


class ConfigError(ValueError):
    """A bad configuration value; the message names the file and the key."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: key '{key}': {problem}")


@dataclass(frozen=True)
class Ports:
    tavern: int = 8888
    """The Tavern web game."""
    oracle: int = 8765
    """The Oracle's OpenAI-compatible API."""
    vault: int = 8767
    """The VaultKeeper API."""
    officer: int = 8768
    """A branch officer on a storage host."""


@dataclass(frozen=True)
class HeroConfig:
    name: str = "DIO"
    """Display name of the hero."""
    config: str = "configs/heroes/dio.yaml"
    """Hero description (architecture, tokenizer) used when no base_model is set; relative to the repo."""
    base_model: str | None = None
    """A local Hugging Face causal-LM folder; when set it becomes the hero."""
    target_loss: float = 0.0
    """Loss at which ATK/DEF reach 100; they start at 0 at the baseline loss ln(vocab size)."""


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 1234
    """Seed for data order, init and dropout: the same seed gives the same run."""
    batch_size: int = 2
    """Packed rows of max_length tokens per micro-step (with packed attention they form one flat
    row of batch_size x max_length tokens)."""
    max_length: int = 2048
    """Longest example in tokens (and the row length). DIO's context is 2,048: SY puzzles need
    465 (L1) to ~1,800 (L50) tokens, BIN problems fit in far less."""
    grad_accum: int = 1
    """Micro-steps per optimizer step."""
    learning_rate: float = 2e-3
    """Peak learning rate after warmup."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to learning_rate * min_lr_ratio."""
    warmup_steps: int = 50
    """Linear warmup length in optimizer steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto picks bf16 on a GPU that supports it, fp32 on CPU."""
    epochs: int = 1
    """Passes over each quest."""
    val_fraction: float = 0.05
    """Share of each quest held out for validation loss."""
    save_steps: int = 500
    """Checkpoint every this many steps (and at the end of each battle)."""
    keep_last: int = 5
    """Checkpoints kept in models/; older ones are pruned."""
    eval_every: int = 200
    """Guild evals every this many steps (and at the end of each battle)."""
    think_weight: float = 0.2
    """Loss weight of <think> tokens in metacog_v1 quests (answer tokens weigh 1)."""
    overlong: Literal["truncate", "refuse"] = "truncate"
    """Rule for an example longer than max_length."""
    event_interval_s: float = 0.5
    """Step events are throttled to at most one per this many seconds."""
    decay_steps: int = 10000
    """Cosine decay length in steps after warmup; the rate then stays at its floor."""
    max_new_tokens: int = 64
    """Token budget of each response from the generate function handed to eval hooks."""
    val_max_examples: int = 256
    """At most this many held-out examples are scored for validation loss."""
    threads: int = 0
    """torch CPU threads per process; 0 means the machine's cores divided by the processes."""
    packed_attention: bool = True
    """Packed examples attend within themselves at their own length (arena.attention); off, a
    dense block-diagonal mask over the whole row gives the same result, slower."""


@dataclass(frozen=True)
class IntakeConfig:
    level: Literal["quick", "standard", "deep"] = "standard"
    """Content-check depth."""
    quarantine: bool = True
    """Refuse examples whose prompt matches an eval-set item."""
    settle_s: float = 0.3
    """A file must keep the same size this long before it is read."""
    max_file_mb: int = 512
    """Files larger than this are refused."""
    max_errors: int = 20
    """Errors reported per refused file."""
    max_line_mb: int = 16
    """Lines longer than this are refused (a 50 MB line is not one training example)."""


@dataclass(frozen=True)
class GuildConfig:
    auto_generate: bool = True
    """Write idle quests when the queue is empty."""
    skills: tuple[str, ...] = ("bin", "sy")
    """Active skills (files in configs/skills/)."""
    eval_size: int = 5
    """Problems per level in each eval set."""
    level_up_threshold: float = 0.8
    """Mean accuracy over the window needed to level up."""
    level_up_window: int = 3
    """How many recent evals the threshold is averaged over."""
    idle_quest_size: int = 2048
    """Examples an idle quest trains: its distinct problems times the epochs its sidecar asks for."""
    skills_dir: str = "configs/skills"
    """Folder of skill YAML files; relative paths are from the repo root."""
    review_share: float = 0.2
    """Share of each idle quest drawn from mastered levels (review), so earlier levels are not forgotten."""


@dataclass(frozen=True)
class TavernConfig:
    token: str | None = None
    """Token for mutating API calls (header X-Realm-Token)."""
    open_on_loopback: bool = True
    """Allow mutating calls without a token when bound to loopback."""
    max_upload_mb: int = 64
    """Largest quest upload accepted."""
    threads: int = 200
    """Server worker threads; each connected browser holds one while its WebSocket is open."""
    relay_interval_s: float = 0.05
    """How often the relay polls the event log for new events (the floor of push latency)."""
    nice: int = 10
    """CPU niceness of the Tavern process (0..19): the trainer beside it keeps the cores it needs,
    and the Tavern takes what is left (its work is small and waits well)."""


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Console and file log level."""
    max_bytes: int = 5_000_000
    """Rotate logs/realm.log at this size."""
    backups: int = 3
    """Rotated log files kept."""


@dataclass(frozen=True)
class RealmConfig:
    home: str | None = None
    """Realm home; null means the repo root. REALM_HOME and --home override it."""
    bind: str = "127.0.0.1"
    """Address every server binds."""
    ports: Ports = field(default_factory=Ports)
    hero: HeroConfig = field(default_factory=HeroConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    guild: GuildConfig = field(default_factory=GuildConfig)
    tavern: TavernConfig = field(default_factory=TavernConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve() if self.home else REPO_ROOT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Keys that only take effect when the realm restarts (the Armory says so).
RESTART_KEYS = frozenset({"home", "bind", "ports", "hero.base_model", "hero.config"})


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, source: str, key: str) -> Any:
    """Check one value against its annotated type; return it in the dataclass's form."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin in (types.UnionType, typing.Union):
        for arm in typing.get_args(tp):
            try:
                return _coerce(value, arm, source, key)
            except ConfigError:
                continue
    elif origin is tuple:
        if isinstance(value, list | tuple):
            (item_tp, *_) = typing.get_args(tp)
            return tuple(_coerce(v, item_tp, source, f"{key}[{i}]") for i, v in enumerate(value))
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(source, key, f"expected {_describe(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, prefix or "<top>", f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(source, dotted, "unknown key; allowed keys here: " + ", ".join(names))
        kwargs[key] = _coerce(value, hints[key], source, dotted)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - dataclass signature mismatch is a bug
        raise ConfigError(source, prefix or "<top>", str(exc)) from exc
    _check_ranges(obj, source, prefix)
    return obj


_POSITIVE = {
    "batch_size",
    "max_length",
    "grad_accum",
    "epochs",
    "save_steps",
    "keep_last",
    "eval_every",
    "max_file_mb",
    "max_errors",
    "eval_size",
    "level_up_window",
    "idle_quest_size",
    "decay_steps",
    "max_new_tokens",
    "val_max_examples",
    "max_upload_mb",
    "max_bytes",
    "tavern",
    "oracle",
    "vault",
    "officer",
}
_FRACTIONS = {"val_fraction", "level_up_threshold", "min_lr_ratio", "think_weight"}


def _check_ranges(obj: Any, source: str, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in _POSITIVE and isinstance(value, int) and value <= 0:
            raise ConfigError(source, dotted, f"must be a positive integer, got {value}")
        if f.name in _FRACTIONS and isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ConfigError(source, dotted, f"must be between 0 and 1, got {value}")
        if dotted == "tavern.nice" and not 0 <= value <= 19:
            raise ConfigError(source, dotted, f"must be a niceness from 0 to 19, got {value}")
        if prefix == "ports" and not 0 < value < 65536:
            raise ConfigError(source, dotted, f"must be a TCP port (1-65535), got {value}")


def parse_config(data: Any, source: str = "<config>") -> RealmConfig:
    """Validate an already-parsed mapping (used by the Armory's PUT /api/config)."""
    return _build(RealmConfig, data, source, "")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "<file>", "file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "<file>", f"not valid YAML: {exc}") from exc
    return data or {}


def load_config(
    path: str | Path | None = None, *, home: str | Path | None = None, overrides: dict | None = None
) -> RealmConfig:
    """Load and validate the realm config.

    Precedence for the home: the `home` argument (--home), then REALM_HOME, then the file, then the repo root.
    A home holding its own `realm.yaml` takes that file as the config unless `path` is given.
    """
    env_home = os.environ.get("REALM_HOME")
    chosen_home = home or env_home
    if path is None and chosen_home and (Path(chosen_home) / "realm.yaml").is_file():
        path = Path(chosen_home) / "realm.yaml"
    path = Path(path) if path else DEFAULT_CONFIG
    data = read_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    if chosen_home:
        data["home"] = str(Path(chosen_home).expanduser().resolve())
    return parse_config(data, str(path))
