"""Shared bases for adapter checkpoints: one base model in memory, its LoRA adapters on it.

`Base` owns one base model folder loaded once (`Base.load`) and the peft operations on it: the first
adapter wraps it in a PeftModel, further ones are added with `load_adapter`, an unloaded one is taken
off with `delete_adapter`, all under the base's lock, which a batch also holds while it generates with
its adapter selected (manager.Loaded.selected). `base_key` is what two adapters must share to share a
base: the resolved folder and its config.

Must not: decide when a base is loaded or freed, or count loads (tavern/oracle/manager.py does, under
its own lock); read the vault or the adapter's sidecar (arena.adapters.adapter_base names the folder).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from arena.inference import architecture_key


def base_key(path: Path) -> str:
    """The resolved folder plus a digest of its config (less names): a folder whose model was
    replaced is another base."""
    path = Path(path).resolve()
    return f"{path}#{hashlib.sha256(architecture_key(path).encode()).hexdigest()[:16]}"


def param_bytes(model) -> int:
    tensors = {t.data_ptr(): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


@dataclass(eq=False)
class Base:
    """A base model shared by the adapter checkpoints loaded on it."""

    key: str  # resolved folder + config digest
    path: Path
    model: Any  # the plain model, until its first adapter wraps it; then the PeftModel
    memory_bytes: int
    load_s: float
    loaded_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)  # a batch's adapter, or an adapter load
    adapters: set[str] = field(default_factory=set)  # names of the loaded checkpoints using it
    itself: str | None = None  # the name it is served under as itself (dio@base), when it is
    pending: int = 0  # adapter loads under way that will use it (it must not be freed meanwhile)
    active_adapter: str | None = None
    wrapped: bool = False

    @classmethod
    def load(cls, key: str, path: Path, device: torch.device, dtype: torch.dtype) -> Base:
        from transformers import AutoModelForCausalLM

        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        model.eval()
        return cls(key, path, model, param_bytes(model), time.perf_counter() - t0)

    def add_adapter(self, path: Path, name: str, device: torch.device) -> int:
        """Put the adapter checkpoint at `path` on this base as `name`: the first wraps the model in a
        PeftModel, the next ones are added to it. Returns the bytes of the adapter's own weights."""
        from peft import PeftModel

        with self.lock:
            if not self.wrapped:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
                self.wrapped = True
            else:
                self.model.load_adapter(path, adapter_name=name, torch_device=str(device))
            self.model.eval()
            self.active_adapter = None  # the next batch selects its own adapter
            mine = re.compile(rf"\.{re.escape(name)}(\.|$)")  # lora_A.<name>.weight, lora_embedding_A.<name>
            return sum(
                t.numel() * t.element_size() for n, t in self.model.named_parameters() if mine.search(n)
            )

    def delete_adapter(self, name: str) -> None:
        """Take an adapter off (a batch of another adapter may hold the lock: this waits for it)."""
        with self.lock:
            if self.model is not None and name in getattr(self.model, "peft_config", {}):
                self.model.delete_adapter(name)
                self.active_adapter = None
        if self.device_type == "cuda":
            torch.cuda.empty_cache()

    @property
    def device_type(self) -> str:
        return "cpu" if self.model is None else next(self.model.parameters()).device.type

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "memory_bytes": self.memory_bytes,
            "adapters": sorted(self.adapters - {self.itself}),
            "served_as": self.itself if self.itself in self.adapters else None,
            "loaded_at": self.loaded_at,
            "load_s": round(self.load_s, 4),
        }
