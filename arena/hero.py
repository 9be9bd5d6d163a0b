"""The hero: the model factory and DIO's byte-level tokenizer.

Two kinds of hero, one code path afterwards:
- DIO (default): a small Qwen3-architecture causal LM built from `configs/heroes/dio.yaml` at first
  start. Its tokenizer is a `tokenizers` byte-level BPE with no merges (256 byte tokens) plus special
  and added tokens, wrapped in `PreTrainedTokenizerFast` with a ChatML chat template, so a saved
  checkpoint loads with plain `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained` and no realm code.
- `hero.base_model: PATH`: any local Hugging Face causal-LM folder, with its own tokenizer and template.

Nothing after `build_hero` knows which kind it has: formatting uses the chat template, generation
uses `eos_token_id`/`pad_token_id`, and checkpoints use `save_pretrained`. Loading a checkpoint and
generating from it (the evals' generate function, the Oracle) live in `arena/inference.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


def build_hero(hero_cfg, repo_root: Path, seed: int = 0):
    """A fresh hero: (model, tokenizer). `hero_cfg` is sentinels.config.HeroConfig."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    if hero_cfg.base_model:
        path = Path(hero_cfg.base_model).expanduser()
        if not (path / "config.json").is_file():
            raise HeroError(f"hero.base_model {path} is not a Hugging Face model folder (no config.json)")
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        return model, ensure_pad(tokenizer)
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
