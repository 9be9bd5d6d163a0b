"""Helpers for the vault tests: small fake checkpoint folders with sidecars, and the `realm vault` CLI.

A fake checkpoint is a real folder in the layout arena.checkpoints writes (canonical name, HF-like
files, `.ledger.json` sidecar), small enough to hash instantly; config.json and tokenizer.json are the
same bytes in every one, as they are in real checkpoints of one hero.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.helpers import REALM_PY, REPO, clean_env

SHARED_FILES = {"config.json": b'{"model_type": "qwen3"}', "tokenizer.json": b'{"vocab": {}}'}


def make_checkpoint(
    models: Path,
    step: int,
    *,
    ts: float | None = None,
    train_loss: float | None = None,
    val_loss: float | None = None,
    skill: str | None = None,
    level: int | None = None,
    weights: int = 4096,
) -> tuple[Path, dict]:
    """A complete checkpoint folder saved at `ts` (epoch seconds); returns (folder, sidecar)."""
    ts = time.time() if ts is None else ts
    models.mkdir(parents=True, exist_ok=True)
    name = f"checkpoint-{step}-{time.strftime('%Y%m%d-%H%M', time.localtime(ts))}"
    folder = models / name
    folder.mkdir()
    for fname, body in SHARED_FILES.items():
        (folder / fname).write_bytes(body)
    (folder / "model.safetensors").write_bytes(step.to_bytes(8, "little") * (weights // 8))
    sidecar = {
        "step": step,
        "name": name,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts)),
        "train_loss": train_loss,
        "val_loss": val_loss,
        "learning_rate": 1e-3,
        "epoch": 0.5,
        "perplexity": None,
        "training_file": "q.jsonl",
        "quest_id": 1,
        "skill_name": skill,
        "skill_level": level,
        "total_examples_trained": step * 4,
        "size_bytes": weights + sum(len(b) for b in SHARED_FILES.values()),
        "has_optimizer": False,
        "ledger_version": 1,
    }
    (folder / ".ledger.json").write_bytes(orjson.dumps(sidecar))
    return folder, sidecar


def vault_cli(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `realm vault ARGS --home HOME` in a subprocess, as a user would.

    Until realm.py registers vault.cli among its room commands, the same click group is run directly."""
    if "vault.cli" in (REPO / "realm.py").read_text():
        argv = [sys.executable, str(REALM_PY), "vault", *args, "--home", str(home)]
    else:
        boot = "import sys; from vault.cli import vault; vault(prog_name='realm vault')"
        argv = [sys.executable, "-c", boot, *args, "--home", str(home)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=REPO)
