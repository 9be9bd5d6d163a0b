"""Memory profiles: how much memory each way of training a hero needs, and which way `auto` picks.

Owns the one memory formula (`estimate_bytes`), counting a folder's parameters without reading its
weights (`count_params_in_folder`), the device's free memory (`free_memory`) and the choice
(`choose_profile`), with a reason that says the numbers. Must not load weights, build adapters
(arena/adapters.py) or train.

The formula, per parameter, before the margin:
- full: 16 bytes. fp32 training holds weights 4 + gradients 4 + AdamW's two moments 8; bf16 mixed
  precision on a GPU holds bf16 weights 2 + bf16 gradients 2 + fp32 master weights and moments 12,
  which is 16 again, so one number serves both.
- lora: the frozen base (2 bytes bf16 on a GPU, 4 bytes fp32 on a CPU) plus the adapters: about
  ADAPTER_FRACTION of the base's count (rank 16 on all seven projections of Qwen3-0.6B is 10.1M of
  596M, 1.7%), each trained in full (16 bytes).
- qlora: the base in 4-bit NF4, 0.55 bytes (0.5 for the weights, the rest for quantisation constants
  and the layers kept in 16 bits), plus the adapters as in lora.
Then the margin: ACTIVATION_MARGIN of that total for activations, temporaries and allocator slack,
plus OVERHEAD_BYTES (CUDA context, kernels, the data and the tokenizer). Activations really scale with
tokens per step, not parameters: the margin is a rule of thumb that held for the presets' batch sizes,
and an explicit `hero.profile` always overrides the choice.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from arena.hero import HeroError
from arena.presets import fmt_params

log = logging.getLogger("realm.profiles")

Kind = Literal["full", "lora", "qlora"]
KINDS: tuple[Kind, ...] = ("full", "lora", "qlora")
FULL_BYTES_PER_PARAM = 16.0
LORA_BASE_BYTES = {"cuda": 2.0, "cpu": 4.0}
QLORA_BASE_BYTES = 0.55
ADAPTER_FRACTION = 0.02
ADAPTER_BYTES_PER_PARAM = 16.0
ACTIVATION_MARGIN = 0.25
OVERHEAD_BYTES = 1e9
EIGHT_BIT_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit")


class ProfileError(HeroError):
    """A memory profile this machine cannot run; the message names the reason and what to use."""


@dataclass(frozen=True)
class ProfileChoice:
    """The profile a hero trains with, why, and the estimates (bytes; None where it cannot run)."""

    kind: Kind
    reason: str
    estimates: dict[str, int | None] = field(default_factory=dict)
    requested: str = "auto"
    device: str = "cpu"
    n_params: int | None = None
    free_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "requested": self.requested,
            "device": self.device,
            "n_params": self.n_params,
            "free_bytes": self.free_bytes,
            "estimates": dict(self.estimates),
        }


def device_kind(device: Any) -> str:
    """'cuda' or 'cpu' for a torch.device, a string like 'cuda:0', or None (the CPU)."""
    text = str(getattr(device, "type", device) or "cpu")
    return "cuda" if text.startswith("cuda") else "cpu"


def estimate_bytes(kind: str, n_params: float, device: Any = "cuda") -> int:
    """Bytes `kind` needs to train `n_params` on `device` (the module docstring's formula)."""
    adapters = ADAPTER_FRACTION * n_params * ADAPTER_BYTES_PER_PARAM
    if kind == "full":
        state = FULL_BYTES_PER_PARAM * n_params
    elif kind == "lora":
        state = LORA_BASE_BYTES[device_kind(device)] * n_params + adapters
    elif kind == "qlora":
        state = QLORA_BASE_BYTES * n_params + adapters
    else:
        raise ValueError(f"unknown memory profile {kind!r}; expected one of {', '.join(KINDS)}")
    return int(state * (1 + ACTIVATION_MARGIN) + OVERHEAD_BYTES)


def estimates(n_params: float, device: Any) -> dict[str, int | None]:
    """Each profile's estimate on `device`; qlora is None off CUDA (it cannot run there)."""
    cuda = device_kind(device) == "cuda"
    return {k: estimate_bytes(k, n_params, device) if (k != "qlora" or cuda) else None for k in KINDS}


def gb(n: float | None) -> str:
    return "?" if n is None else f"{n / 1e9:.1f} GB"


def count_params_in_folder(path: Path) -> int:
    """Parameters of the model in an HF folder, built on the meta device from config.json alone (no
    weights read, no memory taken); tied embeddings count once."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise HeroError(f"{path} is not a Hugging Face model folder (no config.json)")
    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def count_params_dio(hero_cfg, repo_root: Path) -> int:
    """Parameters of the DIO that `hero.config` describes, built on the meta device."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from arena.hero import HeroSpec, byte_tokenizer

    spec_path = Path(hero_cfg.config)
    spec = HeroSpec.read(spec_path if spec_path.is_absolute() else Path(repo_root) / spec_path)
    vocab = len(byte_tokenizer(spec.tokenizer))
    with torch.device("meta"):
        model = Qwen3ForCausalLM(Qwen3Config(vocab_size=vocab, bos_token_id=None, **spec.model))
    return sum(p.numel() for p in model.parameters())


def free_memory(device: Any) -> int | None:
    """Free bytes on `device`: CUDA's mem_get_info, or MemAvailable from /proc/meminfo on the CPU;
    None when it cannot be read."""
    if device_kind(device) == "cuda":
        import torch

        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError, ValueError) as exc:
            log.warning("cannot read free memory of %s: %s", device, exc)
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError) as exc:
        log.warning("cannot read /proc/meminfo: %s", exc)
    try:  # not Linux: total physical memory is the best a CPU can say
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def choose_profile(
    requested: str,
    *,
    n_params: int,
    device: Any,
    free_bytes: int | None,
    optimizer: str = "adamw",
) -> ProfileChoice:
    """The profile to train with. An explicit `requested` (full, lora, qlora) is honoured, with a
    warning in the reason when it does not look like it fits; qlora and 8-bit optimizers off CUDA
    raise ProfileError. `auto`: full when its estimate fits in free memory, else lora, else qlora on
    CUDA, else ProfileError; the reason says the numbers."""
    dev = device_kind(device)
    est = estimates(n_params, dev)
    size = f"{fmt_params(n_params)} parameters"
    free = f"{gb(free_bytes)} free on {dev}" if free_bytes is not None else f"free memory on {dev} unknown"
    _check_device(requested, optimizer, dev)

    def choice(kind: Kind, reason: str) -> ProfileChoice:
        return ProfileChoice(kind, reason, est, requested, dev, n_params, free_bytes)

    if requested != "auto":
        need = est[requested]
        fits = free_bytes is None or need is None or need <= free_bytes
        note = "" if fits else f"; WARNING: it needs about {gb(need)}, which may not fit"
        reason = f"hero.profile {requested} as configured ({size}, {free}{note})"
        return choice(requested, reason)  # type: ignore[arg-type]  (_check_device checked the name)
    if free_bytes is None:
        return choice("full", f"auto: full fine-tuning ({size}; {free}, so nothing to weigh against)")
    table = f"full {gb(est['full'])}, lora {gb(est['lora'])}" + (
        f", qlora {gb(est['qlora'])}" if est["qlora"] is not None else ""
    )
    if est["full"] <= free_bytes:
        return choice("full", f"auto: full fine-tuning fits ({size} need {gb(est['full'])}; {free})")
    if est["lora"] <= free_bytes:
        return choice(
            "lora",
            f"auto: lora, because full fine-tuning needs {gb(est['full'])} and {free} ({size}: {table})",
        )
    if dev == "cuda" and est["qlora"] <= free_bytes and bitsandbytes_available():
        return choice(
            "qlora", f"auto: qlora, because lora needs {gb(est['lora'])} and {free} ({size}: {table})"
        )
    if dev != "cuda":
        hint = "qlora needs a CUDA GPU; use a smaller hero or train on a GPU"
    elif not bitsandbytes_available():
        hint = "install the gpu extra (bitsandbytes) for qlora, or use a smaller hero"
    else:
        hint = "use a smaller hero or a GPU with more memory"
    raise ProfileError(f"hero.profile auto: no profile fits: {size} need {table}; {free}: {hint}")


def _check_device(requested: str, optimizer: str, dev: str) -> None:
    if requested not in ("auto", *KINDS):
        raise ProfileError(f"hero.profile {requested!r} is not one of auto, {', '.join(KINDS)}")
    if dev != "cuda" and requested == "qlora":
        raise ProfileError(
            "hero.profile qlora needs a CUDA GPU (bitsandbytes 4-bit); this machine has none: "
            "use profile lora or full"
        )
    if dev != "cuda" and optimizer in EIGHT_BIT_OPTIMIZERS:
        raise ProfileError(
            f"hero.optimizer {optimizer} needs a CUDA GPU (bitsandbytes 8-bit optimizer states); this "
            "machine has none: use optimizer adamw"
        )
    if dev == "cuda" and (requested == "qlora" or optimizer in EIGHT_BIT_OPTIMIZERS):
        if not bitsandbytes_available():
            what = "hero.profile qlora" if requested == "qlora" else f"hero.optimizer {optimizer}"
            raise ProfileError(
                f"{what} needs bitsandbytes, which is not installed: install the gpu extra "
                "(pip install -e '.[gpu]') or use profile lora and optimizer adamw"
            )


def choose_for_hero(hero_cfg, source, repo_root: Path, device: Any) -> ProfileChoice:
    """The choice for the hero a config names (`source`: arena.presets.HeroSource): DIO, built from a
    description, always trains in full; a folder's exact parameter count meets the device's free
    memory. Logs the choice and its reason."""
    dev = device_kind(device)
    if source.kind == "dio":
        n = count_params_dio(hero_cfg, repo_root)
        _check_device("auto", hero_cfg.optimizer, dev)  # the profile does not apply; the optimizer does
        ignored = (
            f"; hero.profile {hero_cfg.profile} does not apply"
            if hero_cfg.profile not in ("auto", "full")
            else ""
        )
        reason = (
            f"DIO is built from its description and always trains in full"
            f" ({fmt_params(n)} parameters{ignored})"
        )
        picked = ProfileChoice("full", reason, estimates(n, dev), hero_cfg.profile, dev, n, None)
    else:
        n = count_params_in_folder(source.path)
        picked = choose_profile(
            hero_cfg.profile,
            n_params=n,
            device=device,
            free_bytes=free_memory(device),
            optimizer=hero_cfg.optimizer,
        )
    log.info("memory profile %s: %s", picked.kind, picked.reason)
    return picked
