"""Past one device: the same `realm arena` under `accelerate launch` with 2 CPU processes (gloo).

On a machine without GPUs, `accelerate launch --num_processes 2` alone runs one process (its simple
launcher); `--multi_gpu` makes it start 2 ranks through torchrun, and the daemon's Accelerator(cpu=True)
then joins them with gloo. The 2-process run with grad_accum=1 must see the same global batch as a
1-process run with grad_accum=2, so their loss trajectories agree up to float summation order.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REALM_PY, REPO
from tests.test_trainer import (
    arena,
    assert_ledger_matches_folders,
    bin_chats,
    enqueue,
    events,
    query,
    tiny_config,
)

TOLERANCE = 2e-3  # absolute, on per-step losses around 1-5; fp32 reductions differ in order across ranks


@pytest.mark.slow
def test_two_process_run_matches_one_process_with_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for home, accum in ((one, 2), (two, 1)):
        home.mkdir()
        tiny_config(home, grad_accum=accum, save_steps=5, keep_last=5)
        enqueue(home, "bin.jsonl", bin_chats(200, seed=5))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("REALM_HOME", None)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        str(REALM_PY),
        "arena",
        "--max-steps",
        "12",
        "--home",
        str(two),
    ]
    proc = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ref = arena(one, "--max-steps", "12")
    assert ref.returncode == 0, ref.stderr

    # One writer: one set of checkpoints, one event per step, one ledger row per folder.
    names = sorted(p.name.rsplit("-", 2)[0] for p in (two / "models").iterdir())
    assert names == ["checkpoint-10", "checkpoint-12", "checkpoint-5"]
    assert [e["step"] for e in events(two, "step")] == list(range(1, 13))
    assert len(events(two, "battle.start")) == 1
    assert len(query(two, "SELECT * FROM checkpoints")) == 3
    assert_ledger_matches_folders(two)
    assert "arena process 1 of 2" in (two / "logs" / "arena.rank1.log").read_text()

    a = [e["loss"] for e in events(one, "step")]
    b = [e["loss"] for e in events(two, "step")]
    assert len(a) == len(b) == 12
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < TOLERANCE, list(zip(a, b, strict=True))
    assert a[-1] < a[0] - 1.0  # and it is learning
