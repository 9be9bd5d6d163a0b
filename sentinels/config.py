"""Typed realm configuration: the sentinel at the gate.

`load_config` reads `configs/realm.yaml` (or another file), applies overrides, and returns a frozen
`RealmConfig`. The sections are msgspec Structs checked by `sentinels.typed.convert`, the one typed
mechanism the realm uses for every file a person writes: an unknown key, a wrong type or a value outside
the rule declared next to its field raises `ConfigError`, which names the file, the dotted key and what is
allowed. The CLI turns that into exit code 2.

The defaults live here, in the Struct fields, and nowhere else: `configs/realm.yaml` spells the same
values out with comments (a test keeps the two equal), and a home's `realm.yaml` that leaves a key out
gets the default from here. Keys that apply only on the next start are declared with `RESTART` next to
their field; `RESTART_KEYS` lists them for the Armory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from sentinels.typed import TypedError, convert, flagged

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "realm.yaml"


class ConfigError(TypedError):
    """A bad configuration value; the message names the file and the key."""


# Field rules, declared once and used next to each field.
Port = Annotated[int, msgspec.Meta(ge=1, le=65535, description="a TCP port")]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Count = Annotated[int, msgspec.Meta(ge=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
# Meta(extra={"restart": True}) marks a key that applies only when the realm restarts (the Armory says so).
RESTART = msgspec.Meta(extra={"restart": True})


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every section: immutable, and a key it does not declare is an error."""


class Ports(_Section):
    tavern: Port = 8888
    """The Tavern web game."""
    oracle: Port = 8765
    """The Oracle's OpenAI-compatible API."""
    vault: Port = 8767
    """The VaultKeeper API."""
    officer: Port = 8768
    """A branch officer on a storage host."""


class LoraConfig(_Section):
    rank: Positive = 16
    """LoRA rank r of each adapted matrix."""
    alpha: Positive = 32
    """LoRA alpha: the update is scaled by alpha / rank."""
    dropout: Fraction = 0.05
    """Dropout on the LoRA branch's input."""
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    """Module names that get adapters (Qwen/Llama/Mistral names; Phi-3 uses qkv_proj, gate_up_proj)."""


class HeroConfig(_Section):
    name: str = "DIO"
    """Display name of the hero."""
    config: Annotated[str, RESTART] = "configs/heroes/dio.yaml"
    """Hero description (architecture, tokenizer) used when no base_model is set; relative to the repo."""
    base_model: Annotated[str | None, RESTART] = None
    """A local Hugging Face causal-LM folder; when set it becomes the hero."""
    preset: Annotated[str | None, RESTART] = None
    """A preset in configs/heroes/ (`realm hero list`): its model folder, chat template and training
    defaults. base_model, when also set, names the folder instead of the preset's."""
    profile: Annotated[Literal["auto", "full", "lora", "qlora"], RESTART] = "auto"
    """Memory profile: full fine-tuning, LoRA adapters, or LoRA on a 4-bit base (CUDA only); auto picks
    from the model's size and the device's free memory and logs why."""
    lora: Annotated[LoraConfig, RESTART] = LoraConfig()
    """Adapter shape for the lora and qlora profiles."""
    gradient_checkpointing: Annotated[bool, RESTART] = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    optimizer: Annotated[Literal["adamw", "adamw_8bit", "paged_adamw_8bit"], RESTART] = "adamw"
    """adamw (torch), or bitsandbytes' 8-bit / paged 8-bit AdamW (CUDA only)."""
    target_loss: NonNegative = 0.0
    """Loss at which ATK/DEF reach 100; they start at 0 at the baseline loss ln(vocab size)."""


class TrainingConfig(_Section):
    seed: int = 1234
    """Seed for data order, init and dropout: the same seed gives the same run."""
    batch_size: Positive = 2
    """Packed rows of max_length tokens per micro-step (with packed attention they form one flat
    row of batch_size x max_length tokens)."""
    max_length: Positive = 2048
    """Longest example in tokens (and the row length). DIO's context is 2,048: SY puzzles need
    465 (L1) to ~1,800 (L50) tokens, BIN problems fit in far less."""
    grad_accum: Positive = 1
    """Micro-steps per optimizer step."""
    learning_rate: NonNegative = 2e-3
    """Peak learning rate after warmup."""
    min_lr_ratio: Fraction = 0.1
    """The cosine schedule decays to learning_rate * min_lr_ratio."""
    warmup_steps: Count = 50
    """Linear warmup length in optimizer steps."""
    weight_decay: NonNegative = 0.01
    """AdamW weight decay."""
    max_grad_norm: NonNegative = 1.0
    """Gradient clipping norm."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto picks bf16 on a GPU that supports it; on a CPU, fp32 unless cpu_auto_bf16."""
    cpu_auto_bf16: bool = False
    """With precision auto on a CPU with native bf16 (amx_bf16/avx512_bf16), probe once whether bf16
    autocast is faster and use it if so (arena/precision.py). Off by default: on this project's 2-core
    EPYC (avx512_bf16) bf16 ran 3-5x faster, but the fresh realm did not master BIN L1 by step 1,125,
    where fp32 does at ~730 (bench/learning.py)."""
    epochs: Positive = 1
    """Passes over each quest."""
    val_fraction: Fraction = 0.05
    """Share of each quest held out for validation loss."""
    save_steps: Positive = 500
    """Checkpoint every this many steps (and at the end of each battle)."""
    keep_last: Positive = 5
    """Checkpoints kept in models/; older ones are pruned."""
    eval_every: Positive = 100
    """Guild evals every this many steps (and at the end of each battle)."""
    think_weight: Fraction = 0.2
    """Loss weight of <think> tokens in metacog_v1 quests (answer tokens weigh 1)."""
    overlong: Literal["truncate", "refuse"] = "truncate"
    """Rule for an example longer than max_length."""
    event_interval_s: NonNegative = 0.5
    """Step events are throttled to at most one per this many seconds."""
    decay_steps: Positive = 10000
    """Cosine decay length in steps after warmup; the rate then stays at its floor."""
    max_new_tokens: Positive = 64
    """Token budget of each response from the generate function handed to eval hooks."""
    val_max_examples: Positive = 256
    """At most this many held-out examples are scored for validation loss."""
    threads: Count = 0
    """torch CPU threads per process; 0 means the machine's cores divided by the processes."""
    packed_attention: bool = True
    """Packed examples attend within themselves at their own length (arena.attention); off, a
    dense block-diagonal mask over the whole row gives the same result, slower."""
    tensorboard: bool = False
    """Also write the reported scalars as TensorBoard event files under <home>/logs/tb (arena.reporting),
    so `tensorboard --logdir <home>/logs/tb` shows the curves."""


class ArenaConfig(_Section):
    """The arena daemon's scheduling (arena/daemon.py)."""

    preempt: Literal["idle", "priority", "never"] = "idle"
    """When a queued quest takes over the battle at the next step (arena.queue.outranks): idle, a
    player's quest (inbox, upload, CLI) preempts a guild idle quest; priority, that and a higher
    priority preempts a lower one; never, every battle runs to its end. A preempted quest goes back
    to the queue and later resumes at its offset."""


class IntakeConfig(_Section):
    level: Literal["quick", "standard", "deep"] = "standard"
    """Content-check depth."""
    quarantine: bool = True
    """Refuse examples whose prompt matches an eval-set item."""
    settle_s: NonNegative = 0.3
    """A file must keep the same size this long before it is read."""
    leftover_grace_s: NonNegative = 30.0
    """A folder or an orphan FILE.meta.json still in the inbox settle_s plus this long is refused."""
    max_file_mb: Positive = 512
    """Files larger than this are refused."""
    max_errors: Positive = 20
    """Errors reported per refused file."""
    max_line_mb: Positive = 16
    """Lines longer than this are refused (a 50 MB line is not one training example)."""


class GuildConfig(_Section):
    auto_generate: bool = True
    """Write idle quests when the queue is empty."""
    skills: tuple[str, ...] = ("bin", "sy")
    """Active skills (files in configs/skills/)."""
    eval_size: Positive = 5
    """Problems per level in each eval set."""
    level_up_threshold: Fraction = 0.8
    """Mean accuracy over the window needed to level up."""
    level_up_window: Positive = 3
    """How many recent evals the threshold is averaged over."""
    idle_quest_size: Positive = 2048
    """Examples an idle quest trains: its distinct problems times the epochs its sidecar asks for."""
    skills_dir: str = "configs/skills"
    """Folder of skill YAML files; relative paths are from the repo root."""
    review_share: Fraction = 0.2
    """Share of each idle quest drawn from mastered levels of every scheduled skill (review), so
    earlier levels are not forgotten."""
    idle_quest_tokens: Positive = 262144
    """Compute cap of an idle quest at count factor 1, in tokens: a skill with long examples (SY) gets
    fewer of them, so one quest never holds the trainer for long. Short ones (BIN) stay at
    idle_quest_size examples."""
    verify_share: Fraction = 0.0
    """Share of an idle quest's direct examples given to verify examples (the hero's eval mistakes,
    guild/verify.py) once it has wrong answers at that level; the original kept 0.2."""
    train_unready: bool = False
    """Schedule every active skill now, skipping skill files' `needs` (SY waits for BIN L1); waiting
    skills are listed either way."""


class TavernConfig(_Section):
    token: str | None = None
    """Token for mutating API calls (header X-Realm-Token)."""
    open_on_loopback: bool = True
    """Allow mutating calls without a token when bound to loopback."""
    max_upload_mb: Positive = 64
    """Largest quest upload accepted."""
    threads: Positive = 200
    """Server worker threads; each connected browser holds one while its WebSocket is open."""
    relay_interval_s: NonNegative = 0.05
    """How often the relay polls the event log for new events (the floor of push latency)."""
    nice: Annotated[int, msgspec.Meta(ge=0, le=19, description="a CPU niceness")] = 10
    """CPU niceness of the Tavern process (0..19): the trainer beside it keeps the cores it needs,
    and the Tavern takes what is left (its work is small and waits well)."""


class VaultConfig(_Section):
    """Checkpoint retention beyond training.keep_last (vault/retention.py): the newest checkpoint of
    each hour, day and week bucket is kept for as long as each tier lasts."""

    keep_hourly_h: Count = 24
    """Keep one checkpoint per hour for checkpoints up to this many hours old (0: no hourly tier)."""
    keep_daily_d: Count = 7
    """Then one per day up to this many days old (0: no daily tier)."""
    keep_weekly: bool = True
    """Then one per week, however old."""
    delete_unpushed: bool = True
    """The trainer's retention may delete a checkpoint no other zone holds (its ledger row stays);
    false keeps such checkpoints until `realm vault push` puts a copy in a zone."""


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Console and file log level."""
    max_bytes: Positive = 5_000_000
    """Rotate each logs/<service>.log (and bound logs/*.out and cli.log) at this size."""
    backups: Count = 3
    """Rotated log files kept."""


class OracleConfig(_Section):
    """The Oracle, the OpenAI-compatible inference server (`realm oracle`, tavern/oracle/). It reads
    these when it starts."""

    max_loaded: Positive = 2
    """Checkpoints kept in memory at once; loading one more evicts the least recently used."""
    keep_alive_s: Annotated[float, msgspec.Meta(ge=-1)] = 300.0
    """Seconds an idle checkpoint stays loaded (Ollama's keep_alive): 0 unloads it after each
    request, -1 keeps it until evicted. A request's `keep_alive` field overrides it."""
    max_tokens: Positive = 512
    """The most tokens one response may generate: a request's max_tokens is capped to this."""
    default_max_tokens: Positive = 128
    """Tokens generated when a request names no max_tokens."""
    max_prompt_tokens: Positive = 1536
    """Longest prompt in tokens (after the chat template); a longer one is refused with 400."""
    max_batch: Positive = 8
    """Concurrent requests (same checkpoint, same sampling settings) generated as one batch."""
    batch_window_ms: NonNegative = 5.0
    """How long the batcher waits for more requests to join a batch once one arrives."""
    load_wait_s: NonNegative = 10.0
    """A non-streaming request waits this long for its checkpoint to load, then gets 503 with
    Retry-After (a stream gets `: loading` comment lines meanwhile)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: the first GPU when there is one, else the CPU."""
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on a GPU that supports it, fp32 on the CPU."""
    threads: Count = 0
    """torch CPU threads; 0 leaves torch's default (the machine's cores)."""
    token: str | None = None
    """Token for load, unload and reload (header X-Realm-Token or Authorization: Bearer)."""
    open_on_loopback: bool = True
    """Allow load, unload and reload without a token when bound to loopback."""
    vault_url: str | None = None
    """The VaultKeeper API a remote Oracle resolves ids through when its home has no realm
    database; null: the hosts registry's `vault` service."""


class SentinelsConfig(_Section):
    """The guards: `realm health` (sentinels/health.py), the disk guard before each checkpoint
    (sentinels/diskguard.py) and the guardian's stuck check (sentinels/guardian.py)."""

    stuck_after_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    """A trainer that is fighting with no step event for this long is stuck: `realm health` fails,
    and the guardian kills it so that it restarts from its last checkpoint."""
    stuck_check_s: NonNegative = 30.0
    """How often the guardian runs the stuck check (0: never)."""
    min_free_gb: NonNegative = 1.0
    """Free GB the home's disk must keep after a checkpoint: short of it, retention runs first,
    then training pauses with a message saying what to free; `realm health` fails below it."""
    warn_free_gb: NonNegative = 5.0
    """`realm health` warns (without failing) below this many free GB."""
    http_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    """How long `realm health` waits for a service's GET /health."""


class RealmConfig(_Section):
    home: Annotated[str | None, RESTART] = None
    """Realm home; null means the repo root. REALM_HOME and --home override it."""
    bind: Annotated[str, RESTART] = "127.0.0.1"
    """Address every server binds."""
    ports: Annotated[Ports, RESTART] = msgspec.field(default_factory=Ports)
    hero: HeroConfig = msgspec.field(default_factory=HeroConfig)
    training: TrainingConfig = msgspec.field(default_factory=TrainingConfig)
    arena: ArenaConfig = msgspec.field(default_factory=ArenaConfig)
    intake: IntakeConfig = msgspec.field(default_factory=IntakeConfig)
    guild: GuildConfig = msgspec.field(default_factory=GuildConfig)
    tavern: TavernConfig = msgspec.field(default_factory=TavernConfig)
    vault: VaultConfig = msgspec.field(default_factory=VaultConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    oracle: OracleConfig = msgspec.field(default_factory=OracleConfig)
    sentinels: SentinelsConfig = msgspec.field(default_factory=SentinelsConfig)

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve() if self.home else REPO_ROOT

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts of YAML/JSON values, in declaration order."""
        return msgspec.to_builtins(self)


# Keys that only take effect when the realm restarts: those declared with RESTART above.
RESTART_KEYS = flagged(RealmConfig, "restart")


def parse_config(data: Any, source: str = "<config>") -> RealmConfig:
    """Validate an already-parsed mapping (also the Armory's gate for PUT /api/config)."""
    return convert(data, RealmConfig, source=source, error=ConfigError)


def read_yaml(path: Path) -> Any:
    """A YAML file's data ({} when empty), or ConfigError naming the file."""
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

    With `hero.preset` set, the preset's training and hero suggestions (arena/presets.py) sit between
    the defaults and the file: keys the file writes win. The repo's configs/realm.yaml spells every
    default out, so there a key still at its default value does not hide the preset's.
    """
    env_home = os.environ.get("REALM_HOME")
    chosen_home = home or env_home
    if path is None and chosen_home and (Path(chosen_home) / "realm.yaml").is_file():
        path = Path(chosen_home) / "realm.yaml"
    path = Path(path) if path else DEFAULT_CONFIG
    data = read_yaml(path)
    if isinstance(data, dict):  # anything else is refused by parse_config, naming the top level
        hero = data.get("hero")
        preset = hero.get("preset") if isinstance(hero, dict) else None
        if isinstance(preset, str) and preset:  # a non-string is refused by parse_config below
            # Imported here: arena.presets imports this module (its sections validate preset files).
            from arena.presets import PresetError, layer_under, preset_layer

            try:
                layer = preset_layer(preset, REPO_ROOT)
            except TypedError as exc:  # a broken preset file: name that file and its key
                raise ConfigError(exc.source, exc.key, exc.problem) from exc
            except PresetError as exc:
                raise ConfigError(str(path), "hero.preset", str(exc)) from exc
            defaults = RealmConfig().to_dict() if path.resolve() == DEFAULT_CONFIG.resolve() else None
            data = layer_under(layer, data, defaults)
        for dotted, value in (overrides or {}).items():
            node = data
            *parents, last = dotted.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        if chosen_home:
            data["home"] = str(Path(chosen_home).expanduser().resolve())
    return parse_config(data, str(path))
