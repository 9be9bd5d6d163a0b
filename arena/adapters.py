"""Memory profiles applied to a hero: LoRA through peft, 4-bit bases, optimizers, adapter checkpoints.

Owns how a chosen profile (arena.profiles' `ProfileChoice`: full, lora or qlora) becomes a trainable
model and its optimizer, and how an adapter checkpoint is read back or merged:
- `load_base`: the base model folder in the dtype the profile trains it in (qlora: a 4-bit
  bitsandbytes base on CUDA, refused elsewhere with the reason);
- `apply_profile`: gradient checkpointing when asked, and for lora/qlora a peft LoRA wrapper over the
  target modules the model really has (unknown names are warned about, none at all is refused);
- `build_optimizer`: AdamW over the trainable parameters only (decay / no-decay split), or
  bitsandbytes' 8-bit / paged 8-bit AdamW on CUDA;
- `is_adapter_checkpoint`, `adapter_base`, `load_adapter_hero`: an adapter checkpoint (what
  `PeftModel.save_pretrained` writes: adapter_config.json + adapter_model.safetensors) back onto its
  base, for resume (trainable) or inference;
- `export_merged`: a checkpoint as one full model folder that plain `from_pretrained` loads.

Must not: choose the profile (arena.profiles), find the model folder (arena.presets), write
checkpoints or the vault (arena.checkpoints, vault/). peft and bitsandbytes are imported inside the
functions that need them, so importing this module (the Oracle does, through arena.inference) costs
nothing, and a CPU-only install without bitsandbytes works for every profile but qlora.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import torch

from arena.hero import HeroError
from arena.inference import ensure_pad

log = logging.getLogger("realm.adapters")

ADAPTER_CONFIG = "adapter_config.json"
SIDECAR = ".ledger.json"  # vault.ledger.SIDECAR; not imported, so the Oracle's import stays light
# What a full checkpoint holds beyond the model and tokenizer: the trainer's and the vault's files.
TRAINING_FILES = {"trainer_state.json", "trainer_state.pt", SIDECAR}
ADAPTER_PROFILES = ("lora", "qlora")


# ---- device checks -----------------------------------------------------------------------------
def _is_cuda(device) -> bool:
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def require_cuda(what: str, device, fix: str) -> None:
    """Refuse a CUDA-only feature on any other device, naming the feature, the reason and the fix."""
    if not _is_cuda(device) or not torch.cuda.is_available():
        where = torch.device(device).type if device is not None else "this machine"
        raise HeroError(f"{what} needs a CUDA GPU (bitsandbytes); {where} has none: {fix}")


def _bitsandbytes(what: str):
    try:
        import bitsandbytes
    except ImportError as exc:
        raise HeroError(
            f"{what} needs bitsandbytes, which is not installed: pip install -e '.[gpu]'"
        ) from exc
    return bitsandbytes


# ---- building --------------------------------------------------------------------------------------
def base_dtype(kind: str, device) -> torch.dtype:
    """The dtype a base is loaded in: fp32 for full fine-tuning (the optimizer's master weights; the
    accelerator autocasts the math), bf16 for a frozen LoRA base on a GPU that has it (half the
    memory; peft keeps the adapters themselves in fp32), fp32 for anything on a CPU."""
    if kind in ADAPTER_PROFILES and _is_cuda(device) and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_base(path: Path, choice, device=None, dtype: torch.dtype | None = None):
    """The base model of folder `path` as profile `choice.kind` trains it (dtype None: `base_dtype`).

    qlora loads a 4-bit NF4 base (double quantisation, bf16 compute) straight onto the CUDA device;
    on any other device it is refused with the reason. Other profiles load on the CPU, except on a
    GPU, where the weights go straight to it rather than through host memory."""
    from transformers import AutoModelForCausalLM

    path = Path(path).expanduser().resolve()  # adapters record this path as their base
    if not (path / "config.json").is_file():
        raise HeroError(f"{path} is not a Hugging Face model folder (no config.json)")
    kind = choice.kind
    if kind == "qlora":
        require_cuda("hero.profile qlora (a 4-bit base)", device, "use profile lora or full")
        _bitsandbytes("hero.profile qlora")
        from transformers import BitsAndBytesConfig

        dev = torch.device(device or "cuda")
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        return AutoModelForCausalLM.from_pretrained(
            path,
            quantization_config=quant,
            dtype=torch.bfloat16,
            device_map={"": dev.index if dev.index is not None else torch.cuda.current_device()},
        )
    dtype = dtype or base_dtype(kind, device)
    extra: dict[str, Any] = {}
    if _is_cuda(device) and device is not None:
        extra["device_map"] = {"": torch.device(device)}
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **extra)


def enable_checkpointing(model, *, adapters: bool) -> None:
    """Recompute activations in backward. Non-reentrant checkpointing keeps the RNG state, so
    dropout recomputes the same mask and a resumed run stays exact; under adapters the embeddings'
    outputs must require grad, or a checkpointed block whose only trainable weights are inside sees
    no input needing grad and drops the adapters' gradients."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False
    if adapters:
        model.enable_input_require_grads()


def lora_targets(model, wanted) -> list[str]:
    """The names in `wanted` (hero.lora.target_modules) that name modules of `model`; a warning for
    each one it lacks, and an error naming what the model has when none match."""
    leaves: dict[str, str] = {}
    for name, module in model.named_modules():
        if name and not list(module.children()):
            leaves.setdefault(name.rsplit(".", 1)[-1], type(module).__name__)
    found = [t for t in wanted if t in leaves]
    missing = [t for t in wanted if t not in leaves]
    if missing:
        log.warning(
            "hero.lora.target_modules: %s not in %s; adapting %s",
            ", ".join(missing),
            type(model).__name__,
            ", ".join(found) or "nothing",
        )
    if not found:
        linear = sorted(k for k, v in leaves.items() if "Linear" in v)
        raise HeroError(
            f"hero.lora.target_modules {list(wanted)}: none is a module of {type(model).__name__}; "
            f"its linear layers are {linear}"
        )
    return found


def _prepare_base(model, kind: str, hero_cfg, *, adapters: bool):
    """Ready a base for training under its profile: a 4-bit base gets peft's k-bit preparation (norms
    in fp32, inputs that require grad, checkpointing as asked); any other, checkpointing if asked."""
    if kind == "qlora":
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=hero_cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if hero_cfg.gradient_checkpointing:
        enable_checkpointing(model, adapters=adapters)
    return model


def apply_profile(model, choice, hero_cfg):
    """`model` ready to train under `choice`: gradient checkpointing when hero.gradient_checkpointing,
    and for lora/qlora a peft LoRA wrapper (hero.lora: rank, alpha, dropout, target modules)."""
    adapters = choice.kind in ADAPTER_PROFILES
    model = _prepare_base(model, choice.kind, hero_cfg, adapters=adapters)
    if not adapters:
        return model
    from peft import LoraConfig, get_peft_model

    lora = hero_cfg.lora
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_targets(model, lora.target_modules),
        task_type="CAUSAL_LM",
    )
    wrapped = get_peft_model(model, config)
    log.info(
        "LoRA r=%d alpha=%d on %s: %d of %d parameters trainable",
        lora.rank,
        lora.alpha,
        ", ".join(config.target_modules),
        trainable_params(wrapped),
        total_params(wrapped),
    )
    return wrapped


def build_optimizer(model, training_cfg, hero_cfg, *, device=None) -> torch.optim.Optimizer:
    """AdamW over the parameters that train, in `named_parameters` order (a resumed run rebuilds the
    same groups in the same order, which is what its saved state maps onto); matrices decay, norms
    and biases do not. hero.optimizer adamw_8bit / paged_adamw_8bit use bitsandbytes (CUDA only)."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise HeroError("the hero has no trainable parameters (every weight is frozen)")
    groups = [
        {"params": decay, "weight_decay": training_cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kw = {"lr": training_cfg.learning_rate, "betas": (0.9, 0.95)}
    kind = getattr(hero_cfg, "optimizer", "adamw")
    if kind == "adamw":
        # Fused on CUDA (one kernel for every parameter, as HF Trainer's default); foreach elsewhere.
        fused = device is not None and torch.device(device).type == "cuda"
        return torch.optim.AdamW(groups, **kw, **({"fused": True} if fused else {}))
    require_cuda(f"hero.optimizer {kind}", device, "use optimizer adamw")
    bnb = _bitsandbytes(f"hero.optimizer {kind}")
    cls = bnb.optim.PagedAdamW8bit if kind == "paged_adamw_8bit" else bnb.optim.AdamW8bit
    return cls(groups, **kw)


def trainable_params(model) -> int:
    return sum(_numel(p) for p in model.parameters() if p.requires_grad)


def total_params(model) -> int:
    return sum(_numel(p) for p in model.parameters())


def _numel(p: torch.Tensor) -> int:
    # A bitsandbytes 4-bit parameter packs two weights per byte; its quant_state knows the real shape.
    state = getattr(p, "quant_state", None)
    shape = getattr(state, "shape", None)
    return int(torch.Size(shape).numel()) if shape is not None else p.numel()


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


# ---- adapter checkpoints ------------------------------------------------------------------------------
def is_adapter_checkpoint(path: Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def hero_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar's `hero` mapping of a checkpoint ({} when it has none)."""
    side = Path(path) / SIDECAR
    if not side.is_file():
        return {}
    return orjson.loads(side.read_bytes()).get("hero") or {}


def adapter_base(path: Path) -> Path:
    """The base model folder an adapter checkpoint applies to: the sidecar's hero.base_model, else
    adapter_config.json's base_model_name_or_path. Refused when that folder is not there."""
    path = Path(path)
    try:
        cfg = orjson.loads((path / ADAPTER_CONFIG).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise HeroError(f"{path / ADAPTER_CONFIG}: cannot read the adapter config ({exc})") from exc
    base = hero_sidecar(path).get("base_model") or cfg.get("base_model_name_or_path")
    if not base:
        raise HeroError(f"{path}: an adapter checkpoint that names no base model (adapter_config.json)")
    base_path = Path(base).expanduser()
    if not (base_path / "config.json").is_file():
        raise HeroError(
            f"{path.name} is a LoRA adapter of base model {base_path}, which is not there "
            "(no config.json): restore that folder, or pull it from the vault"
        )
    return base_path


class _Kind:
    """The part of arena.profiles.ProfileChoice that loading needs (no profile is chosen here)."""

    def __init__(self, kind: str):
        self.kind = kind


def load_adapter_hero(
    path: Path,
    *,
    device=None,
    dtype: torch.dtype | None = torch.float32,
    trainable: bool = False,
    hero_cfg=None,
    base: Path | None = None,
):
    """(PeftModel, tokenizer) of an adapter checkpoint on its base.

    trainable=True (resume) loads the base as the checkpoint's profile trained it (`dtype=None`:
    `base_dtype`; a qlora checkpoint gets its 4-bit base, so only on CUDA) and re-applies
    hero.gradient_checkpointing from `hero_cfg`. Inference (trainable=False) loads any base in
    `dtype`, a qlora one too (the adapter is plain LoRA weights), and returns the model in eval mode.
    `base` overrides the recorded base folder (a copy of it elsewhere)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    path = Path(path)
    base_path = Path(base) if base is not None else adapter_base(path)
    kind = hero_sidecar(path).get("profile") or "lora"
    load_kind = kind if trainable else "lora"
    model = load_base(base_path, _Kind(load_kind), device if trainable else None, dtype)
    if trainable and hero_cfg is not None:
        model = _prepare_base(model, load_kind, hero_cfg, adapters=True)
    model = PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
    if not trainable:
        model.eval()
        if device is not None:
            model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, ensure_pad(tokenizer)


# ---- export ------------------------------------------------------------------------------------------
def export_merged(checkpoint: Path, out: Path) -> dict[str, Any]:
    """A checkpoint as one full model folder `out` that plain `from_pretrained` loads.

    An adapter checkpoint is loaded onto its base in fp32, merged (`merge_and_unload`) and saved in
    safetensors with the tokenizer; a full checkpoint is copied without the trainer's state and the
    vault's sidecar. Written into `out`.tmp-<pid> and renamed, so `out` is complete or absent; an
    existing `out` is refused, never overwritten."""
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_dir():
        raise HeroError(f"{checkpoint}: no such checkpoint folder")
    if out.exists():
        raise HeroError(f"{out} already exists: choose another output folder or remove it")
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if is_adapter_checkpoint(checkpoint):
            base = adapter_base(checkpoint)
            model, tokenizer = load_adapter_hero(checkpoint, dtype=torch.float32)
            merged = model.merge_and_unload()
            merged.config.use_cache = True
            merged.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            result = {"merged": True, "base_model": str(base), "params": total_params(merged)}
        else:
            if not (checkpoint / "config.json").is_file():
                raise HeroError(f"{checkpoint} is neither a model nor an adapter checkpoint (no config.json)")
            tmp.mkdir(parents=True)
            for p in sorted(checkpoint.iterdir()):
                if p.is_file() and p.name not in TRAINING_FILES:
                    shutil.copy2(p, tmp / p.name)
            base = hero_sidecar(checkpoint).get("base_model")
            result = {"merged": False, "base_model": base, "params": _safetensors_params(tmp)}
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s to %s (%s)", checkpoint.name, out, "merged" if result["merged"] else "copied")
    return {"out": str(out), **result}


def _safetensors_params(folder: Path) -> int:
    """Parameters stored in a folder's safetensors files, from their headers (no tensor is read)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += int(torch.Size(st.get_slice(key).get_shape()).numel())
    return total
