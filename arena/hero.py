"""The hero: the model factory and DIO's byte-level tokenizer.

Two kinds of hero, one code path afterwards:
- DIO (default): a small Qwen3-architecture causal LM built from `configs/heroes/dio.yaml` at first
  start. Its tokenizer is a `tokenizers` byte-level BPE with no merges (256 byte tokens) plus special
  and added tokens, wrapped in `PreTrainedTokenizerFast` with a ChatML chat template, so a saved
  checkpoint loads with plain `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained` and no realm code.
- `hero.base_model: PATH` or `hero.preset: NAME` (arena.presets finds the folder): any local Hugging
  Face causal-LM folder, with its own tokenizer and template (the preset's when the folder has none).

A folder hero trains under a memory profile (`hero.profile`): arena.profiles picks full, lora or
qlora from the model's size and the device's free memory (or honours the one asked for) and says why;
arena.adapters loads the base and wraps it. DIO is always full fine-tuning (arena.profiles): it has no
base folder an adapter could refer to. `make_hero` returns the model with its profile choice and source;
`build_hero` is its (model, tokenizer) form.

Nothing after `build_hero` knows which kind it has: formatting uses the chat template, generation
uses `eos_token_id`/`pad_token_id`, and checkpoints use `save_pretrained` (a peft model writes its
adapter). Loading a checkpoint and generating from it (the evals' generate function, the Oracle) live
in `arena/inference.py`; profiles, LoRA and merged export in `arena/adapters.py`.

Must not: train, checkpoint, or decide the profile's rule (arena.profiles owns it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import torch
import yaml

from arena.inference import ensure_pad
from sentinels.typed import TypedError, convert

log = logging.getLogger("realm.hero")

# ChatML, the format Qwen models use: the markers are single special tokens in DIO's vocabulary.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


class HeroError(ValueError):
    """The hero cannot be built; the message says which file or key is wrong."""


class HeroFileError(TypedError, HeroError):
    """A hero description key that does not fit the schema: names the file and the key."""


# The hero description's schema (configs/heroes/*.yaml), checked by the realm's one typed mechanism.
class _HeroPart(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every mapping in a hero file: a key it does not declare is an error."""


class TokenizerSpec(_HeroPart):
    model_max_length: Annotated[int, msgspec.Meta(ge=1)] = 2048
    """The tokenizer's context length."""
    special_tokens: tuple[str, ...] = ()
    """Special tokens (chat markers), one id each after the 256 bytes."""
    added_tokens: tuple[str, ...] = ()
    """Frequent multi-byte symbols or tags, one token each."""
    pad_token: str | None = None
    """None means the first special token."""
    eos_token: str | None = None
    """The token generation stops at."""
    chat_template: str = CHAT_TEMPLATE
    """A Jinja chat template; ChatML by default."""


class HeroFile(_HeroPart):
    model: dict[str, Any]
    """Qwen3Config keyword arguments (transformers checks them)."""
    tokenizer: TokenizerSpec
    architecture: Annotated[
        Literal["qwen3"], msgspec.Meta(description="only qwen3 is built from a description")
    ] = "qwen3"


@dataclass(frozen=True)
class HeroSpec:
    """A parsed hero description file (configs/heroes/*.yaml)."""

    path: Path
    model: dict[str, Any]
    tokenizer: TokenizerSpec

    @classmethod
    def read(cls, path: Path) -> HeroSpec:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise HeroError(f"hero config {path} not found; set hero.config or hero.base_model") from exc
        except yaml.YAMLError as exc:
            raise HeroFileError(str(path), "<file>", f"not valid YAML: {exc}") from exc
        spec = convert(data, HeroFile, source=str(path), error=HeroFileError)
        return cls(Path(path), spec.model, spec.tokenizer)


def byte_tokenizer(spec: TokenizerSpec):
    """DIO's tokenizer: 256 byte tokens, no merges, plus special and added tokens; no download."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # The byte-level alphabet maps each of the 256 bytes to one printable character; ids follow
    # byte order so id == byte value, which keeps dumps of token ids readable.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_of)
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # use_regex=False: with no merges, splitting words first would only cost time.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(spec.special_tokens)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.added_tokens])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=spec.pad_token or (specials[0] if specials else None),
        eos_token=spec.eos_token,
        bos_token=None,
        unk_token=None,
        chat_template=spec.chat_template,
        model_max_length=spec.model_max_length,
        clean_up_tokenization_spaces=False,
    )


def _byte_of(ch: str) -> int:
    # GPT-2's bytes_to_unicode: printable latin-1 bytes map to themselves, the rest to 256 + n.
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    code = ord(ch)
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]


@dataclass(frozen=True)
class FixedProfile:
    """The profile of a hero that has no choice to make (DIO; a resumed checkpoint, whose profile is
    the one it was trained under): the fields of arena.profiles.ProfileChoice the trainer reads."""

    reason: str
    kind: str = "full"
    estimates: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hero:
    """A fresh hero: the model (a peft model under lora/qlora), its tokenizer, the profile choice
    (arena.profiles.ProfileChoice or FixedProfile) and where it came from (arena.presets.HeroSource)."""

    model: Any
    tokenizer: Any
    choice: Any
    source: Any


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_hero(hero_cfg, repo_root: Path, seed: int = 0, *, device=None) -> Hero:
    """A fresh hero under its memory profile. `hero_cfg` is sentinels.config.HeroConfig; `device` is
    where it will train (None: the first GPU, else the CPU), which the profile choice depends on."""
    from arena import adapters
    from arena.presets import resolve_hero
    from arena.profiles import choose_for_hero

    source = resolve_hero(hero_cfg, repo_root)
    dev = torch.device(device) if device is not None else default_device()
    choice = choose_for_hero(hero_cfg, source, repo_root, dev)  # logs the choice and its reason
    if source.kind == "dio":
        model, tokenizer = _build_dio(hero_cfg, repo_root, seed)
        if hero_cfg.gradient_checkpointing:
            adapters.enable_checkpointing(model, adapters=False)
        return Hero(model, tokenizer, choice, source)
    from transformers import AutoTokenizer

    path = Path(source.path)
    tokenizer = ensure_pad(AutoTokenizer.from_pretrained(path))
    if not tokenizer.chat_template and source.chat_template:
        tokenizer.chat_template = source.chat_template  # saved with every checkpoint from here on
    torch.manual_seed(seed)  # the same seed initialises the same adapters
    model = adapters.load_base(path, choice, dev)
    model = adapters.apply_profile(model, choice, hero_cfg)
    return Hero(model, tokenizer, choice, source)


def build_hero(hero_cfg, repo_root: Path, seed: int = 0, *, device=None):
    """A fresh hero: (model, tokenizer). `make_hero` also says which profile and source it has."""
    hero = make_hero(hero_cfg, repo_root, seed, device=device)
    return hero.model, hero.tokenizer


def _build_dio(hero_cfg, repo_root: Path, seed: int):
    """DIO from its description file: a Qwen3 model with the byte-level tokenizer."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    spec_path = Path(hero_cfg.config)
    spec = HeroSpec.read(spec_path if spec_path.is_absolute() else repo_root / spec_path)
    tokenizer = byte_tokenizer(spec.tokenizer)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **spec.model,
    )
    torch.manual_seed(seed)  # the same seed builds the same initial weights
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    log.info("built hero from %s: %.2fM parameters", spec.path, count_params(model) / 1e6)
    return model, tokenizer


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
