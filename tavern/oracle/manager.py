"""The model manager: which checkpoints are in memory, loading them, and letting them go.

- Up to `oracle.max_loaded` checkpoints stay loaded, least recently used first out (llama.cpp's router).
- Each has a keep_alive (Ollama's): `oracle.keep_alive_s`, or the last request's `keep_alive`; the
  reaper unloads an idle checkpoint when it runs out (0: right after the request; negative: never).
- A checkpoint whose architecture (config.json less its names) matches a loaded one is not built
  again (SGLang's update_weights_from_disk): at capacity, its tensors are copied into the least
  recently used idle model of that architecture; below it, into a copy of a loaded one. Only a new
  architecture pays for `from_pretrained`. Tokenizers are cached by their files' content, so the
  checkpoints of one run share one.
- Loading runs in its own thread; `acquire` waits for it up to a deadline and then raises
  `StillLoading` (the app answers 503 + Retry-After, or a stream's `: loading` lines).
- A checkpoint in use (`active` > 0) is never swapped over or evicted; an unload takes it out of the
  table at once, and its memory goes when its last generation ends.
- Adapter checkpoints (a LoRA's `adapter_config.json` + `adapter_model.safetensors`, no full weights)
  share their base as vLLM's LoRA serving does: bases are kept by the base folder's resolved path and
  config, the first adapter of a base loads it once ("base") and wraps it as a PeftModel, each further
  adapter is added to that PeftModel ("adapter"). Each adapter is a loaded checkpoint of its own (LRU,
  keep_alive, `active`, max_loaded); a batch selects its adapter under the base's lock (`selected`),
  and the engine never mixes two adapters in one batch. The last adapter of a base to go frees it.
  The base model itself (`dio@base`, a `model` asset) is served on that same Base with its adapters
  switched off (how "base"), so comparing a base with its fine-tunes holds one copy in memory.

Owns what is in memory and how it got there; it never writes checkpoints or the vault (ids.py reads
the vault, the engine runs the batches).
"""

from __future__ import annotations

import copy
import itertools
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from arena.adapters import adapter_base, is_adapter_checkpoint
from arena.inference import (
    architecture_key,
    load_checkpoint_hero,
    pick_device,
    read_weights,
    swap_weights,
)
from tavern.oracle.bases import Base, base_key
from tavern.oracle.ids import Target
from tavern.oracle.protocol import OracleError, StillLoading
from tavern.oracle.tokenizers import Tokenizers

log = logging.getLogger("realm.oracle.manager")


@dataclass
class Loaded:
    """One checkpoint in memory."""

    name: str
    asset_id: str
    path: Path
    arch: str
    model: Any
    tokenizer: Any
    keep_alive_s: float
    how: str  # build | copy | swap | adapter: how its model came to be
    load_s: float
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    active: int = 0
    requests: int = 0
    adapter: str | None = None  # the peft adapter name, for an adapter checkpoint
    base: Base | None = None  # the shared base it runs on, for an adapter checkpoint
    adapter_bytes: int = 0
    dropped: bool = False  # out of the table; an adapter still in use is deleted at its last release
    retired: bool = False  # its adapter was taken off its base

    @contextmanager
    def selected(self) -> Iterator[Any]:
        """The model, ready to generate this checkpoint: for an adapter, the base's lock is held (one
        batch, or one adapter load, on a base at a time) and its adapter is the active one."""
        if self.base is None:
            yield self.model
            return
        with self.base.lock:
            if self.adapter is None:  # the base itself: the PeftModel (if wrapped) with adapters off
                model = self.base.model
                if self.base.wrapped:
                    with model.disable_adapter():
                        yield model
                else:
                    yield model
                return
            if self.base.active_adapter != self.adapter:
                # inference_mode keeps the adapter's weights frozen (peft would make them trainable).
                self.model.set_adapter(self.adapter, inference_mode=True)
                self.base.active_adapter = self.adapter
            yield self.model

    @property
    def param_bytes(self) -> int:
        if self.base is not None:
            return self.adapter_bytes  # the base's memory is counted once, in the manager's status
        tensors = {t.data_ptr(): t for t in [*self.model.parameters(), *self.model.buffers()]}
        return sum(t.numel() * t.element_size() for t in tensors.values())

    def expires_at(self) -> float | None:
        return None if self.keep_alive_s < 0 else self.last_used + self.keep_alive_s

    def to_dict(self) -> dict[str, Any]:
        p = next(self.model.parameters())
        return {
            "model": self.name,
            "asset_id": self.asset_id,
            "path": str(self.path),
            "device": str(p.device),
            "dtype": str(p.dtype).removeprefix("torch."),
            "memory_bytes": self.param_bytes,
            "loaded_at": self.loaded_at,
            "last_used": self.last_used,
            "expires_at": self.expires_at(),
            "keep_alive_s": self.keep_alive_s,
            "active": self.active,
            "requests": self.requests,
            "how": self.how,
            "load_s": round(self.load_s, 4),
            **(
                {"base": str(self.base.path), "base_memory_bytes": self.base.memory_bytes}
                if self.base is not None
                else {}
            ),
        }


class ModelManager:
    def __init__(self, cfg, *, start_reaper: bool = True):
        """`cfg` is sentinels.config.OracleConfig."""
        self.cfg = cfg
        self.device, self.dtype = pick_device(cfg.device, cfg.dtype)
        self._cv = threading.Condition()
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()  # least recently used first
        self._loading: dict[str, float] = {}  # name -> started at
        self._errors: dict[str, Exception] = {}
        self.tokenizers = Tokenizers()
        self._stop = threading.Event()
        self._bases: dict[str, Base] = {}  # key (resolved folder + config) -> the base adapters share
        self._base_loading: set[str] = set()
        self._adapter_seq = itertools.count(1)
        self.loads = {"build": 0, "copy": 0, "swap": 0, "base": 0, "adapter": 0}
        if start_reaper:
            threading.Thread(target=self._reap, name="oracle-reaper", daemon=True).start()

    # ---- using a checkpoint -------------------------------------------------------------------------
    def acquire(self, target: Target, *, wait_s: float | None, keep_alive_s: float | None = None) -> Loaded:
        """The loaded checkpoint, marked in use (call `release`). Starts loading it when needed and
        waits up to `wait_s` (None: as long as it takes); then StillLoading."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        with self._cv:
            while True:
                entry = self._loaded.get(target.name)
                if entry is not None:
                    entry.active += 1
                    entry.requests += 1
                    entry.last_used = time.time()
                    if keep_alive_s is not None:
                        entry.keep_alive_s = keep_alive_s
                    self._loaded.move_to_end(target.name)
                    return entry
                if target.name in self._errors:
                    exc = self._errors.pop(target.name)
                    raise OracleError(
                        500, f"{target.name} could not be loaded: {exc}", type="server_error"
                    ) from exc
                if target.name not in self._loading:
                    self._start_load(target, keep_alive_s)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise StillLoading(target.name, self._retry_after(target.name))
                self._cv.wait(left)

    def release(self, entry: Loaded, keep_alive_s: float | None = None) -> None:
        with self._cv:
            entry.active -= 1
            entry.last_used = time.time()
            if keep_alive_s is not None:
                entry.keep_alive_s = keep_alive_s
            if entry.active == 0 and entry.keep_alive_s == 0 and self._loaded.get(entry.name) is entry:
                self._drop(entry.name, "keep_alive 0")
            elif entry.active == 0 and entry.dropped and entry.base is not None:
                self._retire_adapter(entry)  # unloaded while it generated: its adapter goes now
            self._cv.notify_all()

    def is_loaded(self, name: str) -> bool:
        with self._cv:
            return name in self._loaded

    def load(self, target: Target, keep_alive_s: float | None = None) -> Loaded:
        """Load (or keep) a checkpoint and wait for it; the preload behind POST /oracle/load."""
        entry = self.acquire(target, wait_s=None, keep_alive_s=keep_alive_s)
        self.release(entry)
        return entry

    def unload(self, name: str) -> bool:
        with self._cv:
            if name not in self._loaded:
                return False
            self._drop(name, "unload")
            return True

    def status(self) -> dict[str, Any]:
        with self._cv:
            loaded = [e.to_dict() for e in reversed(self._loaded.values())]  # most recent first
            loading = [{"model": n, "since": t} for n, t in self._loading.items()]
            bases = [b.to_dict() for b in self._bases.values()]
        # An adapter's memory_bytes is its own weights; the base they share is counted once.
        models_bytes = sum(e["memory_bytes"] for e in loaded) + sum(b["memory_bytes"] for b in bases)
        out: dict[str, Any] = {
            "loaded": loaded,
            "loading": loading,
            "bases": bases,
            "max_loaded": self.cfg.max_loaded,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "loads": dict(self.loads),
            "memory": {"rss_bytes": _rss_bytes(), "models_bytes": models_bytes},
        }
        if self.device.type == "cuda":
            out["memory"]["cuda_allocated_bytes"] = torch.cuda.memory_allocated(self.device)
        return out

    def close(self) -> None:
        self._stop.set()

    # ---- loading ------------------------------------------------------------------------------------
    def _start_load(self, target: Target, keep_alive_s: float | None) -> None:
        self._loading[target.name] = time.time()
        threading.Thread(
            target=self._load, args=(target, keep_alive_s), name=f"oracle-load-{target.name}", daemon=True
        ).start()

    def _retry_after(self, name: str) -> int:
        # A load here takes about a second for DIO; ask again in a second or two.
        return 1 if name in self._loading else 2

    def _load(self, target: Target, keep_alive_s: float | None) -> None:
        t0 = time.perf_counter()
        try:
            if is_adapter_checkpoint(target.path):
                entry = self._load_adapter(target)
            elif target.kind == "model":
                entry = self._load_base_model(target)
            else:
                entry = self._load_full(target)
            entry.keep_alive_s = self.cfg.keep_alive_s if keep_alive_s is None else keep_alive_s
            entry.load_s = time.perf_counter() - t0
            with self._cv:
                self._loaded[target.name] = entry
                if entry.how != "base":  # _base_for counted the base's own load, if it loaded it
                    self.loads[entry.how] += 1
                if entry.base is not None:
                    entry.base.adapters.add(entry.name)
                    entry.base.pending -= 1
                self._evict_over_capacity(keep=target.name)
            log.info("loaded %s (%s) in %.3f s", target.name, entry.how, entry.load_s)
        except Exception as exc:  # the waiting request reports it; the server keeps serving
            log.exception("loading %s failed", target.name)
            with self._cv:
                self._errors[target.name] = exc
        finally:
            with self._cv:
                self._loading.pop(target.name, None)
                self._cv.notify_all()

    def _load_full(self, target: Target) -> Loaded:
        arch = architecture_key(target.path)
        tokenizer = self.tokenizers.get(target.path)
        with self._cv:
            donor, how = self._donor(arch)
        if how == "build":
            model, _ = load_checkpoint_hero(target.path, device=self.device, dtype=self.dtype)
            model.eval()
        else:
            model = donor if how == "swap" else copy.deepcopy(donor)
            swap_weights(model, read_weights(target.path, self.device))
        _generation_config(model, target.path)
        return Loaded(target.name, target.asset_id, target.path, arch, model, tokenizer, 0.0, how, 0.0)

    # ---- adapters on shared bases -------------------------------------------------------------------
    def _load_adapter(self, target: Target) -> Loaded:
        """The adapter checkpoint added to its base's PeftModel (the base loaded first if need be)."""
        base_path = target.base or adapter_base(target.path)
        tokenizer = self.tokenizers.get(target.path, target.base)
        base = self._base_for(base_path)  # counts this load in base.pending
        try:
            # A fresh name per load: an unloaded adapter still finishing a batch keeps its own.
            name = f"{re.sub(r'[^0-9A-Za-z_]', '_', target.name)}_{next(self._adapter_seq)}"
            own = base.add_adapter(target.path, name, self.device)
        except Exception:
            with self._cv:
                base.pending -= 1
                self._maybe_free_base(base)
            raise
        return Loaded(
            target.name,
            target.asset_id,
            target.path,
            f"adapter:{base.key}",  # never an architecture a full checkpoint could swap into
            base.model,
            tokenizer,
            0.0,
            "adapter",
            0.0,
            adapter=name,
            base=base,
            adapter_bytes=own,
        )

    def _load_base_model(self, target: Target) -> Loaded:
        """A base model folder served as itself, on the shared Base its adapters use (one copy)."""
        tokenizer = self.tokenizers.get(target.path)  # first: nothing to undo if it fails
        base = self._base_for(target.path)  # counts this load in base.pending
        with self._cv:
            base.itself = target.name
        arch = f"adapter:{base.key}"  # never swapped over by a full checkpoint
        return Loaded(
            target.name,
            target.asset_id,
            target.path,
            arch,
            base.model,
            tokenizer,
            0.0,
            "base",
            0.0,
            base=base,
        )

    def _base_for(self, path: Path) -> Base:
        """The loaded base at `path` (loading it, once, when no adapter uses it yet), with this
        caller counted in its `pending` so it is not freed before the adapter joins it."""
        path = Path(path).resolve()
        key = base_key(path)
        with self._cv:
            while True:
                base = self._bases.get(key)
                if base is not None:
                    base.pending += 1
                    return base
                if key not in self._base_loading:  # nobody else loads it: this thread does
                    self._base_loading.add(key)
                    break
                self._cv.wait()
        try:
            base = Base.load(key, path, self.device, self.dtype)
            base.pending = 1
        except BaseException:
            with self._cv:
                self._base_loading.discard(key)
                self._cv.notify_all()  # a waiting load of this base tries it itself
            raise
        with self._cv:  # in the same hold as the table: a waiter sees the base, never neither
            self._bases[key] = base
            self.loads["base"] += 1
            self._base_loading.discard(key)
            self._cv.notify_all()
        log.info("loaded base %s in %.3f s", path, base.load_s)
        return base

    def _retire_adapter(self, entry: Loaded) -> None:
        """An adapter (or the base served as itself) out of the table with no generation left: remove
        it from its base, or free the base when it was the last user; called with the lock held."""
        base = entry.base
        if base is None or entry.name not in base.adapters or entry.retired:
            return
        entry.retired = True
        base.adapters.discard(entry.name)
        if not self._maybe_free_base(base) and entry.adapter is not None:
            # Others still use the base: delete this adapter from it, under the base's lock (a batch
            # of another adapter may hold it for seconds; the manager's lock must not wait for that).
            threading.Thread(
                target=base.delete_adapter, args=(entry.adapter,), name="oracle-adapter-rm", daemon=True
            ).start()

    def _maybe_free_base(self, base: Base) -> bool:
        """Free the base when no adapter uses it or is joining it; called with the lock held."""
        if base.adapters or base.pending > 0:
            return False
        if self._bases.get(base.key) is base:
            del self._bases[base.key]
        log.info("freeing base %s: no adapter uses it", base.path)
        if self.device.type == "cuda":
            base.model = None
            torch.cuda.empty_cache()
        return True

    def _donor(self, arch: str) -> tuple[Any, str]:
        """(model, how) for a new checkpoint of `arch`; called with the lock held.

        At capacity the least recently used idle checkpoint leaves: if it has this architecture its
        model takes the new weights ("swap"), else it is dropped. Below capacity a loaded model of
        this architecture is copied ("copy"); otherwise a model is built ("build")."""
        if len(self._loaded) >= self.cfg.max_loaded:
            victim = next((e for e in self._loaded.values() if e.active == 0), None)
            if victim is not None:
                del self._loaded[victim.name]
                if victim.arch == arch:
                    log.info("swapping weights into %s's model", victim.name)
                    return victim.model, "swap"
                self._free(victim, "evicted (least recently used)")
        same = next((e for e in reversed(self._loaded.values()) if e.arch == arch), None)
        if same is not None:
            return same.model, "copy"
        return None, "build"

    def _evict_over_capacity(self, keep: str) -> None:
        while len(self._loaded) > self.cfg.max_loaded:
            victim = next((e for e in self._loaded.values() if e.active == 0 and e.name != keep), None)
            if victim is None:
                return  # everything is in use; the reaper evicts once something is idle
            self._drop(victim.name, "evicted (least recently used)")

    def _drop(self, name: str, why: str) -> None:
        self._free(self._loaded.pop(name), why)

    def _free(self, entry: Loaded, why: str) -> None:
        log.info("unloading %s: %s", entry.name, why)
        entry.dropped = True
        if entry.base is not None:
            if entry.active == 0:
                self._retire_adapter(entry)
            return  # else its last release retires it
        if self.device.type == "cuda" and entry.active == 0:
            entry.model = None
            torch.cuda.empty_cache()

    def _reap(self) -> None:
        while not self._stop.wait(0.5):
            now = time.time()
            with self._cv:
                for e in list(self._loaded.values()):
                    exp = e.expires_at()
                    if e.active == 0 and exp is not None and exp <= now:
                        self._drop(e.name, f"keep_alive {e.keep_alive_s:g} s ran out")
                self._evict_over_capacity(keep="")


def _generation_config(model, path: Path) -> None:
    """A swapped-in checkpoint brings its own generation defaults (eos, pad, sampling)."""
    from transformers import GenerationConfig

    if (Path(path) / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(path)


def _rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
