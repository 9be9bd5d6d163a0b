"""Checkpoints: atomic folders, the ledger, retention and resume.

A checkpoint is one self-contained folder `models/checkpoint-{step}-{YYYYMMDD}-{HHMM}/`:

    config.json, generation_config.json, model.safetensors   HF save_pretrained (safetensors)
    tokenizer.json, tokenizer_config.json, chat_template.jinja   the tokenizer
    trainer_state.json    loop state (step, quest id/epoch/offset, counters): readable; its
                          "format" says which LoopState wrote it (arena.trainer reads every one)
    trainer_state.pt      optimizer, scheduler and RNG states, for exact resume: tensors and plain
                          data only, read with torch.load(weights_only=True)
    .ledger.json          the ledger fields (LEDGER_FIELDS), written last

Atomicity: everything is written into `models/.tmp-checkpoint-*`, each file fsynced, then the folder
is renamed to its final name and the parent directory fsynced. A folder without the `.tmp-` prefix
is therefore complete. The ledger row (vault `checkpoints` table) is written after the rename; a
crash between the two is repaired by `reconcile()` from the sidecar, which is why the ledger can
always be rebuilt from the folders. Retention marks the row deleted, renames the folder to
`.trash-*` and then removes it, so a half-deleted folder is never listed either.

Loading never runs code from a checkpoint: weights are safetensors, and trainer_state.pt is read
with `weights_only=True`, which unpickles only tensors and plain containers. Checkpoints will come
from other zones over the network; one whose state file holds anything else (a pickled object whose
unpickling would call arbitrary functions) is refused with `CheckpointError`, never half-trusted.

`REALM_TEST_CRASH_AT=point[@n]` makes the process kill itself (SIGKILL) the n-th time it reaches
`crash_point(point)`: the crash tests use it to hit exact moments.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch

from vault.store import Store

log = logging.getLogger("realm.checkpoints")

LEDGER_VERSION = 1
SIDECAR = ".ledger.json"
STATE_JSON = "trainer_state.json"
STATE_PT = "trainer_state.pt"
NAME_RE = re.compile(r"^checkpoint-(\d+)-(\d{8})-(\d{4})$")
LEDGER_FIELDS = (
    "step",
    "timestamp",
    "train_loss",
    "val_loss",
    "learning_rate",
    "epoch",
    "perplexity",
    "training_file",
    "quest_id",
    "skill_name",
    "skill_level",
    "total_examples_trained",
    "size_bytes",
    "has_optimizer",
    "ledger_version",
)

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


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class CheckpointManager:
    def __init__(self, models: Path, store: Store, keep_last: int):
        self.models, self.store, self.keep_last = Path(models), store, keep_last

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
        """Remove crash leftovers and make the ledger agree with the folders."""
        report: dict[str, list[str]] = {"removed": [], "added": [], "marked_deleted": [], "restored": []}
        self.models.mkdir(parents=True, exist_ok=True)
        for p in self.models.iterdir():
            if p.name.startswith((".tmp-", ".trash-")) or (
                NAME_RE.match(p.name) and not (p / SIDECAR).is_file()
            ):
                shutil.rmtree(p, ignore_errors=True)
                report["removed"].append(p.name)
        on_disk = {c.name: c for c in self.list()}
        rows = {r["name"]: r for r in self.store.query("SELECT name, deleted FROM checkpoints")}
        with self.store.tx() as conn:
            for name, cp in on_disk.items():
                if name not in rows:
                    self._insert(conn, cp.name, cp.path, cp.ledger)
                    report["added"].append(name)
                elif rows[name]["deleted"]:
                    conn.execute("UPDATE checkpoints SET deleted = 0 WHERE name = ?", (name,))
                    report["restored"].append(name)
            for name, row in rows.items():
                if name not in on_disk and not row["deleted"]:
                    conn.execute("UPDATE checkpoints SET deleted = 1 WHERE name = ?", (name,))
                    report["marked_deleted"].append(name)
        if any(report.values()):
            log.info("checkpoint reconcile: %s", {k: v for k, v in report.items() if v})
        return report

    # ---- writing -------------------------------------------------------------------------------
    def save(
        self,
        *,
        model,
        tokenizer,
        loop_state: dict[str, Any],
        tensors_state: dict[str, Any] | None,
        ledger: dict[str, Any],
    ) -> Checkpoint:
        step = int(loop_state["step"])
        now = time.time()
        name = f"checkpoint-{step}-{time.strftime('%Y%m%d-%H%M', time.localtime(now))}"
        existing = [c for c in self.list() if c.step == step]
        if existing and existing[-1].loop_state() == loop_state:
            return existing[-1]  # e.g. `stop` right after a periodic save: nothing new to keep
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
        (tmp / SIDECAR).write_bytes(orjson.dumps(sidecar, option=orjson.OPT_INDENT_2))
        _fsync_tree(tmp)
        final = self.models / name
        for old in existing:  # same step, newer loop state: the new folder replaces the old one
            with self.store.tx() as conn:
                conn.execute("UPDATE checkpoints SET deleted = 1 WHERE name = ?", (old.name,))
            os.replace(old.path, self.models / f".trash-{old.name}")
        os.replace(tmp, final)
        _fsync_dir(self.models)
        crash_point("checkpoint_renamed")
        with self.store.tx() as conn:
            self._insert(conn, name, final, sidecar)
        for old in existing:
            shutil.rmtree(self.models / f".trash-{old.name}", ignore_errors=True)
        log.info("checkpoint %s saved (%.1f MB)", name, sidecar["size_bytes"] / 1e6)
        return Checkpoint(name, final, step, sidecar)

    def _insert(self, conn, name: str, path: Path, s: dict[str, Any]) -> None:
        extra = {k: v for k, v in s.items() if k not in LEDGER_FIELDS and k != "name"}
        conn.execute(
            "INSERT OR REPLACE INTO checkpoints (step, name, path, created_at, train_loss, val_loss,"
            " learning_rate, epoch, perplexity, training_file, quest_id, skill_name, skill_level,"
            " total_examples_trained, size_bytes, has_optimizer, ledger_version, deleted, extra)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?)",
            (
                s["step"],
                name,
                str(path),
                s.get("timestamp"),
                s.get("train_loss"),
                s.get("val_loss"),
                s.get("learning_rate"),
                s.get("epoch"),
                s.get("perplexity"),
                s.get("training_file"),
                s.get("quest_id"),
                s.get("skill_name"),
                s.get("skill_level"),
                s.get("total_examples_trained"),
                s.get("size_bytes"),
                int(bool(s.get("has_optimizer", True))),
                int(s.get("ledger_version", LEDGER_VERSION)),
                orjson.dumps(extra).decode(),
            ),
        )

    def prune(self) -> list[str]:
        """Keep the newest keep_last checkpoints; older ones leave the ledger, then the disk."""
        cps = self.list()
        doomed = cps[: max(0, len(cps) - self.keep_last)]
        for cp in doomed:
            with self.store.tx() as conn:
                conn.execute("UPDATE checkpoints SET deleted = 1 WHERE name = ?", (cp.name,))
            trash = self.models / f".trash-{cp.name}"
            os.replace(cp.path, trash)
            crash_point("prune")
            shutil.rmtree(trash, ignore_errors=True)
            log.info("pruned %s (keep_last=%d)", cp.name, self.keep_last)
        return [cp.name for cp in doomed]
