"""TensorBoard event files from a real training run (`training.tensorboard: true`, arena/reporting.py).

One short real `realm arena --until-idle` on a small quest with the tiny config and TensorBoard on;
the event files under <home>/logs/tb are read back with TensorBoard's own reader (event_accumulator)
and served by a real `tensorboard --logdir` on a free loopback port: the train loss curve is exactly
the step events' losses, step for step, and the val loss the battle's end. The Reporter's sink rules
(the event log first, a failing extra sink dropped, never the training) are checked in-process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers import arena, bin_chats, enqueue, events, free_port, stop, tiny_config, wait_until


@pytest.fixture(scope="module")
def tb_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("tb") / "home"
    home.mkdir()
    tiny_config(home, tensorboard=True, save_steps=1000)
    enqueue(home, "bin_tb.jsonl", bin_chats(60, seed=3))
    proc = arena(home, "--until-idle")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home


def scalars(home: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(home / "logs" / "tb"), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    assert tag in acc.Tags()["scalars"], acc.Tags()["scalars"]
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_the_loss_curves_are_the_step_events(tb_home):
    steps = events(tb_home, "step")
    assert len(steps) >= 3, "the battle is long enough to draw a curve"
    train = scalars(tb_home, "train/loss")
    assert [s for s, _ in train] == [e["step"] for e in steps]
    assert [v for _, v in train] == pytest.approx([e["loss"] for e in steps], rel=1e-6)  # float32 in TB
    lr = scalars(tb_home, "train/lr")
    assert [v for _, v in lr] == pytest.approx([e["lr"] for e in steps], rel=1e-6)
    (end,) = events(tb_home, "battle.end")
    assert end["val_loss"] is not None
    assert scalars(tb_home, "val/loss") == [(end["step"], pytest.approx(end["val_loss"], rel=1e-6))]


def test_tensorboard_serves_the_curves(tb_home):
    """`tensorboard --logdir <home>/logs/tb` itself: its scalars API returns the train loss curve."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(tb_home / "logs" / "tb")]
        + ["--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def curve() -> list | None:
            try:
                r = requests.get(
                    f"http://127.0.0.1:{port}/data/plugin/scalars/scalars",
                    params={"run": ".", "tag": "train/loss"},
                    timeout=5,
                )
            except requests.RequestException:
                return None
            return r.json() if r.status_code == 200 and r.json() else None

        points = wait_until(curve, 90, "TensorBoard to serve train/loss", interval=0.5, proc=proc)
        steps = events(tb_home, "step")
        assert [p[1] for p in points] == [e["step"] for e in steps]
        assert [p[2] for p in points] == pytest.approx([e["loss"] for e in steps], rel=1e-6)
    finally:
        stop(proc)


def test_off_by_default(trained_home):
    """The default config writes no event files (the trained home ran with training.tensorboard off)."""
    assert not (trained_home / "logs" / "tb").exists()


# ---- the sink interface ---------------------------------------------------------------------------------
class Broken:
    """A sink whose every call fails, as a full disk or a missing package would."""

    closed = False

    def emit(self, kind, payload):
        raise OSError("disk full")

    def close(self):
        Broken.closed = True


class Kept:
    def __init__(self):
        self.seen: list[tuple[str, dict]] = []

    def emit(self, kind, payload):
        self.seen.append((kind, dict(payload)))

    def close(self):
        pass


def test_the_event_log_comes_first_and_a_broken_sink_is_dropped(realm):
    from arena.reporting import EventLogSink, Reporter

    kept = Kept()
    rep = Reporter(realm.store, realm.events, interval_s=0.0, sinks=[Broken(), kept])
    assert isinstance(rep.sinks[0], EventLogSink)
    assert rep.step({"step": 1, "loss": 2.5}, {"xp": 1, "level": 0}) is True
    rep.emit("battle.end", step=1, val_loss=2.4)
    assert [e["kind"] for e in events(realm.home.root)] == ["step", "battle.end"]  # nothing lost
    assert [k for k, _ in kept.seen] == ["step", "battle.end"] and kept.seen[0][1]["xp"] == 1
    assert len(rep.sinks) == 2  # the broken one is gone after its first failure
    rep.close()
    assert not Broken.closed  # a dropped sink is not called again, not even to close


def test_disabled_reporters_report_nowhere(realm, tmp_path):
    """Ranks other than 0 get enabled=False: no event, no TensorBoard file."""
    from arena.reporting import Reporter, TensorBoardSink

    rep = Reporter(
        realm.store, realm.events, interval_s=0.0, enabled=False, sinks=[TensorBoardSink(tmp_path / "tb")]
    )
    rep.step({"step": 1, "loss": 2.5}, {"xp": 1})
    rep.close()
    assert events(realm.home.root) == [] and not (tmp_path / "tb").exists()
