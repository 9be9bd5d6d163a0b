"""Loading checkpoints (issue 12, defect 11): older loop-state formats load; pickled code is refused.

One real checkpoint is written by `realm arena` (module fixture); each test works on a copy of its
home. The previous format of trainer_state.json (format 1) is the field set LoopState had until
format 2 (`git log -p arena/trainer.py`): no "format" key, and `recent` for `recent_losses`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import orjson
import pytest
import torch

from arena.checkpoints import STATE_JSON, STATE_PT, CheckpointError, CheckpointManager
from arena.trainer import STATE_FORMAT, LoopState
from tests.helpers import arena, bin_chats, enqueue, events, query, tiny_config

STEPS = 3
# LoopState's fields as format 1 wrote them (every checkpoint saved before format 2).
FORMAT_1_FIELDS = [
    "step",
    "examples_trained",
    "tokens_trained",
    "completed_quests",
    "quest_id",
    "quest_epoch",
    "quest_offset",
    "quest_done",
    "train_loss",
    "val_loss",
    "recent",
]


class WritesMarker:
    """Unpickling this calls open(marker, "w"): the file appearing means code ran at load time."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("trained") / "home"
    home.mkdir()
    tiny_config(home, save_steps=1000)
    enqueue(home, "first.jsonl", bin_chats(400, seed=1))
    proc = arena(home, "--max-steps", str(STEPS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home


@pytest.fixture
def copy(trained: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(trained, home)
    return home


def latest_folder(home: Path) -> Path:
    (cp,) = [p for p in (home / "models").iterdir() if p.name.startswith("checkpoint-")]
    return cp


def as_format_1(state: dict) -> dict:
    old = {k: v for k, v in state.items() if k != "format"}
    old["recent"] = old.pop("recent_losses")
    assert sorted(old) == sorted(FORMAT_1_FIELDS)
    return old


def test_checkpoints_record_their_format(trained):
    state = orjson.loads((latest_folder(trained) / STATE_JSON).read_bytes())
    assert state["format"] == STATE_FORMAT
    assert state["step"] == STEPS and len(state["recent_losses"]) == STEPS


def test_loop_state_reads_the_previous_format(trained, caplog):
    state = orjson.loads((latest_folder(trained) / STATE_JSON).read_bytes())
    current = LoopState.from_dict(state)
    assert current.step == STEPS and current.quest_id == 1
    assert LoopState.from_dict(as_format_1(state)) == current

    # Unknown fields are dropped with a warning; missing ones take their defaults.
    odd = {**as_format_1(state), "hero_mood": "grumpy"}
    del odd["tokens_trained"]
    with caplog.at_level(logging.INFO, logger="realm.trainer"):
        loaded = LoopState.from_dict(odd, "old/trainer_state.json")
    assert (
        loaded.tokens_trained == 0 and loaded.step == STEPS and loaded.recent_losses == current.recent_losses
    )
    assert "old/trainer_state.json: ignoring unknown loop-state fields hero_mood" in caplog.text
    assert "tokens_trained" in caplog.text


def test_arena_resumes_from_a_previous_format_checkpoint(copy):
    folder = latest_folder(copy)
    state = orjson.loads((folder / STATE_JSON).read_bytes())
    (folder / STATE_JSON).write_text(json.dumps({**as_format_1(state), "hero_mood": "grumpy"}))
    before = max(e["event_id"] for e in events(copy))
    proc = arena(copy, "--max-steps", str(STEPS + 2))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [e["step"] for e in events(copy, "step", since=before)]
    assert steps == [STEPS + 1, STEPS + 2]  # resumed where the old checkpoint was, not from 0
    log = (copy / "logs" / "arena.log").read_text()
    assert f"resuming from {folder.name} (step {STEPS})" in log
    assert "ignoring unknown loop-state fields hero_mood" in log


def test_pickled_code_in_trainer_state_is_refused(copy, tmp_path):
    folder = latest_folder(copy)
    marker = tmp_path / "code-ran"
    real = torch.load(folder / STATE_PT, weights_only=True)  # the genuine file loads as data
    assert set(real) == {"optimizer", "scheduler", "torch_rng", "python_rng"}
    torch.save({**real, "optimizer": WritesMarker(marker)}, folder / STATE_PT)

    from vault.store import Store

    store = Store.for_home(copy)
    try:
        latest = CheckpointManager(copy / "models", store, keep_last=3).latest()
        with pytest.raises(CheckpointError, match="refused: it would call"):
            latest.tensors_state()
    finally:
        store.close()
    assert not marker.exists()

    steps_before = len(events(copy, "step"))
    proc = arena(copy, "--max-steps", str(STEPS + 2))
    assert proc.returncode == 1
    assert f"{folder / STATE_PT}: refused" in proc.stderr
    assert not marker.exists(), "loading the checkpoint ran code from it"
    assert len(events(copy, "step")) == steps_before  # nothing trained on a refused checkpoint
    assert query(copy, "SELECT count(*) AS n FROM checkpoints WHERE deleted = 0") == [{"n": 1}]
