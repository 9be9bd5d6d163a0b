"""Checkpoints: atomic folders, landing them in the vault, retention and resume.

A checkpoint is one self-contained folder `models/checkpoint-{step}-{YYYYMMDD}-{HHMM}/`:

    config.json, generation_config.json, model.safetensors   HF save_pretrained (safetensors)
    tokenizer.json, tokenizer_config.json, chat_template.jinja   the tokenizer
    trainer_state.json    loop state (step, quest id/epoch/offset, counters): readable; its
                          "format" says which LoopState wrote it (arena.trainer reads every one)
    trainer_state.pt      optimizer, scheduler and RNG states, for exact resume: tensors and plain
                          data only, read with torch.load(weights_only=True)
    .ledger.json          the ledger fields (LEDGER_FIELDS), written last, and `hero`: the preset,
                          the memory profile, the base model folder with the sha256 tree digest of
                          its files, and trainable / total parameters (`hero_mapping`)

Under the lora and qlora profiles the model is a peft model, whose `save_pretrained` writes the
adapter only (adapter_config.json + adapter_model.safetensors, no model.safetensors): the checkpoint
needs its base folder, which the sidecar names and fingerprints (the vault records the dependency).

Atomicity: everything is written into `models/.tmp-checkpoint-*`, each file fsynced (and hashed in
the same pass, while it is still in the page cache), then the folder is renamed to its final name and
the parent directory fsynced. A folder without the `.tmp-` prefix is therefore complete. After the
rename, one vault call (`vault.ledger.Ledger.land`) writes the ledger row, the catalog asset with every
file's sha256, and its local location, in one transaction. A crash between rename and landing is
repaired by `reconcile()` (`Ledger.reconcile`) from the sidecar, which is why the ledger can always be
rebuilt from the folders. The arena never writes the vault's tables itself.

Retention is the vault's policy (`vault.retention`: the last keep_last, aliased checkpoints, and one
per hour/day/week by age); it marks the row deleted, renames the folder to `.trash-*` and then removes
it, so a half-deleted folder is never listed either.

Loading never runs code from a checkpoint: weights are safetensors, and trainer_state.pt is read
with `weights_only=True`, which unpickles only tensors and plain containers. Checkpoints will come
from other zones over the network; one whose state file holds anything else (a pickled object whose
unpickling would call arbitrary functions) is refused with `CheckpointError`, never half-trusted.

`REALM_TEST_CRASH_AT=point[@n]` makes the process kill itself (SIGKILL) the n-th time it reaches
`crash_point(point)`: the crash tests use it to hit exact moments.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import torch

from sentinels.diskguard import DiskGuard, checkpoint_need
from vault import retention
from vault.catalog import Catalog
from vault.identity import FileEntry, Identity, hash_file, identify, list_files, tree_digest
from vault.ids import CANONICAL_RE as NAME_RE
from vault.ledger import LEDGER_FIELDS, LEDGER_VERSION, SIDECAR, Ledger
from vault.store import Store

if TYPE_CHECKING:
    from sentinels.config import RealmConfig

log = logging.getLogger("realm.checkpoints")

STATE_JSON = "trainer_state.json"
STATE_PT = "trainer_state.pt"

_hits: dict[str, int] = {}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted or read; the message names the file and why."""


def crash_point(name: str) -> None:
    """Die here, as kill -9 would, when REALM_TEST_CRASH_AT names this point (tests only)."""
    want = os.environ.get("REALM_TEST_CRASH_AT")
    if not want:
        return
    point, _, nth = want.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        log.warning("REALM_TEST_CRASH_AT=%s: killing myself", want)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Checkpoint:
    name: str
    path: Path
    step: int
    ledger: dict[str, Any]

    def loop_state(self) -> dict[str, Any]:
        return orjson.loads((self.path / STATE_JSON).read_bytes())

    def tensors_state(self) -> dict[str, Any]:
        """Optimizer, scheduler and RNG states; refuses a file that holds more than tensors and data."""
        path = self.path / STATE_PT
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch's message mostly explains how to load the file unsafely; keep only what it found.
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            what = f"it would call {found.group(1)}" if found else "it holds more than tensors and data"
            raise CheckpointError(
                f"{path}: refused: {what} when unpickled; only tensors and plain data are loaded"
                f" (move {self.name} out of models/ to resume from the checkpoint before it)"
            ) from None


def _fsync_and_identify(root: Path) -> Identity:
    """fsync every file of a just-written folder and hash it in the same pass: the bytes are still in
    the page cache, so the vault's content identity costs a memory read, not a disk read."""
    files = []
    for rel, p in list_files(root):
        sha, size = hash_file(p)
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        files.append(FileEntry(rel, sha, size, p.stat().st_mtime_ns))
    _fsync_dir(root)
    return Identity(tree_digest(files), sum(f.size for f in files), tuple(files), True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def base_digest(path: str) -> str:
    """The vault identity (tree digest) of a base model folder. Once per process: a base's bytes do
    not change under a running trainer, and hashing a 14B base costs about a minute."""
    return identify(Path(path)).digest  # remembered: the vault's landing of the adapter reads no byte again


def hero_mapping(model, *, preset: str | None, profile: str, base_model: str | Path | None) -> dict[str, Any]:
    """The sidecar's `hero` mapping: what the checkpoint is of, and what it needs to be loaded."""
    from arena.adapters import total_params, trainable_params

    base = str(Path(base_model).expanduser().resolve()) if base_model else None
    return {
        "preset": preset,
        "profile": profile,
        "base_model": base,
        "base_sha256": base_digest(base) if base and Path(base).is_dir() else None,
        "trainable_params": trainable_params(model),
        "total_params": total_params(model),
    }


class SavedTensors:
    """What `save_pretrained` writes of a model, for sentinels.diskguard.checkpoint_need: a peft
    model saves its adapter only, so sizing the save by the whole state dict (base included) would
    ask for gigabytes of room to write megabytes."""

    def __init__(self, model):
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        if hasattr(self.model, "peft_config"):
            from peft import get_peft_model_state_dict

            return get_peft_model_state_dict(self.model)
        return self.model.state_dict()


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class CheckpointManager:
    def __init__(
        self,
        models: Path,
        store: Store,
        keep_last: int,
        *,
        policy: retention.RetentionPolicy | None = None,
        delete_unpushed: bool = True,
        disk_guard: DiskGuard | None = None,
    ):
        """`policy` defaults to keep_last plus the default thinning schedule; `delete_unpushed` lets
        retention remove a checkpoint no other zone holds (config vault.delete_unpushed);
        `disk_guard` makes room (or waits for it) before each save (sentinels.diskguard)."""
        self.models, self.store, self.keep_last = Path(models), store, keep_last
        self.policy = policy or retention.RetentionPolicy(keep_last)

        self.delete_unpushed = delete_unpushed
        self.disk_guard = disk_guard
        self.ledger = Ledger(store)
        self._catalog: Catalog | None = None

    @classmethod
    def for_config(cls, models: Path, store: Store, config: RealmConfig) -> CheckpointManager:
        """The manager the realm's config asks for: keep_last plus the vault's retention schedule."""
        return cls(
            models,
            store,
            config.training.keep_last,
            policy=retention.RetentionPolicy.from_config(config),
            delete_unpushed=config.vault.delete_unpushed,
            disk_guard=DiskGuard.for_config(config, store),
        )

    @property
    def catalog(self) -> Catalog:
        # Opened on first use (rank 0 only writes): models/ sits in the realm home, the zone `local`.
        if self._catalog is None:
            self._catalog = Catalog(self.store, self.models.parent)
        return self._catalog

    # ---- reading -------------------------------------------------------------------------------
    def list(self) -> list[Checkpoint]:
        """Complete checkpoint folders, oldest step first (temp and trash folders never count)."""
        found = []
        if not self.models.is_dir():
            return found
        for p in self.models.iterdir():
            m = NAME_RE.match(p.name)
            if m and p.is_dir() and (p / SIDECAR).is_file():
                found.append(Checkpoint(p.name, p, int(m.group(1)), orjson.loads((p / SIDECAR).read_bytes())))
        return sorted(found, key=lambda c: (c.step, c.name))

    def latest(self) -> Checkpoint | None:
        cps = self.list()
        return cps[-1] if cps else None

    # ---- start-up repair -----------------------------------------------------------------------
    def reconcile(self) -> dict[str, list[str]]:
        """Remove crash leftovers, then let the vault make ledger and catalog agree with the folders."""
        removed: list[str] = []
        self.models.mkdir(parents=True, exist_ok=True)
        for p in self.models.iterdir():
            if p.name.startswith((".tmp-", ".trash-")) or (
                NAME_RE.match(p.name) and not (p / SIDECAR).is_file()
            ):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        if removed:
            log.info("checkpoint reconcile: removed %s", removed)
        return {"removed": removed, **self.ledger.reconcile(self.models, self.catalog)}

    # ---- writing -------------------------------------------------------------------------------
    def save(
        self,
        *,
        model,
        tokenizer,
        loop_state: dict[str, Any],
        tensors_state: dict[str, Any] | None,
        ledger: dict[str, Any],
        hero: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Write one checkpoint folder atomically and land it in the vault; `hero` is the sidecar's
        hero mapping (`hero_mapping`)."""
        step = int(loop_state["step"])
        now = time.time()
        name = f"checkpoint-{step}-{time.strftime('%Y%m%d-%H%M', time.localtime(now))}"
        existing = [c for c in self.list() if c.step == step]
        if existing and existing[-1].loop_state() == loop_state:
            return existing[-1]  # e.g. `stop` right after a periodic save: nothing new to keep
        if self.disk_guard is not None:  # before any byte: retention first, else a paused wait
            prev = existing[-1] if existing else self.latest()
            prev_size = prev.ledger.get("size_bytes") if prev else None
            need = checkpoint_need(SavedTensors(model), tensors_state, prev_size)
            self.disk_guard.ensure(need, retention=self.prune)
        tmp = self.models / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / STATE_JSON).write_bytes(orjson.dumps(loop_state, option=orjson.OPT_INDENT_2))
        if tensors_state is not None:
            torch.save(tensors_state, tmp / STATE_PT)
        crash_point("checkpoint_write")
        sidecar = {
            **{k: ledger.get(k) for k in LEDGER_FIELDS},
            "step": step,
            "name": name,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
            "has_optimizer": tensors_state is not None,
            "ledger_version": LEDGER_VERSION,
            "size_bytes": folder_size(tmp),  # everything but the sidecar itself
        }
        if hero is not None:
            sidecar["hero"] = hero
        (tmp / SIDECAR).write_bytes(orjson.dumps(sidecar, option=orjson.OPT_INDENT_2))
        identity = _fsync_and_identify(tmp)  # relpaths and mtimes survive the rename below
        final = self.models / name
        for old in existing:  # same step, newer loop state: the new folder replaces the old one
            self.ledger.mark_deleted(old.name)
            os.replace(old.path, self.models / f".trash-{old.name}")
        os.replace(tmp, final)
        _fsync_dir(self.models)
        crash_point("checkpoint_renamed")
        self.ledger.land(final, sidecar, self.catalog, identity=identity)
        for old in existing:
            shutil.rmtree(self.models / f".trash-{old.name}", ignore_errors=True)
        log.info("checkpoint %s saved (%.1f MB)", name, sidecar["size_bytes"] / 1e6)
        return Checkpoint(name, final, step, sidecar)

    def prune(self) -> list[str]:
        """Apply the vault's retention policy to models/; returns the names it removed."""
        res = retention.enforce(
            self.ledger,
            self.catalog,
            self.models,
            self.policy,
            force=self.delete_unpushed,
            between=lambda name: crash_point("prune"),
        )
        return res.deleted
