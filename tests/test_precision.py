"""`training.precision: auto` on a CPU (arena/precision.py): the rule, the probe kept in the home, and
a real training step under the precision it chose."""

from __future__ import annotations

import json

import pytest
import torch

from arena import precision
from tests.helpers import bin_chats, tiny_config

NO_BF16 = "model name\t: Plain CPU\nflags\t\t: fpu sse sse2 avx avx2 avx512f\n"
AMX = "model name\t: Xeon with AMX\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_the_rule_flags_first_then_speedup():
    assert precision.cpu_flags(AMX) == (
        "Xeon with AMX",
        {"fpu", "sse", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"},
    )
    assert precision.native_bf16_flags(precision.cpu_flags(NO_BF16)[1]) == ()
    native = precision.native_bf16_flags(precision.cpu_flags(AMX)[1])
    assert native == ("amx_bf16", "avx512_bf16")
    # No native bf16: fp32, and no timing is asked for.
    assert precision.decide((), None, "fp").dtype == "fp32"
    with pytest.raises(ValueError):
        precision.decide(native, None, "fp")
    # The AMX box: a DIO step 490 ms in fp32, 290 ms in bf16 -> bf16.
    amx = precision.decide(native, (490.0, 290.0), "fp")
    assert amx.bf16 and "1.69x" in amx.reason
    # Native bf16 that is not clearly faster keeps fp32.
    assert precision.decide(native, (100.0, 90.0), "fp").dtype == "fp32"
    assert precision.decide(native, (100.0, 200.0), "fp").dtype == "fp32"
    assert precision.fingerprint(NO_BF16) != precision.fingerprint(AMX)


def test_no_native_bf16_keeps_fp32_and_the_result_is_kept(realm):
    choice = precision.resolve_cpu_auto(realm.store, cpuinfo=NO_BF16)
    assert choice.dtype == "fp32" and choice.fp32_ms is None  # decided from the flags, no probe
    stored = realm.store.get_state(precision.STATE_KEY)
    assert stored["dtype"] == "fp32" and stored["fingerprint"] == precision.fingerprint(NO_BF16)
    assert precision.resolve_cpu_auto(realm.store, cpuinfo=NO_BF16) == choice
    # Another machine (another fingerprint) decides again: here a CPU that has AMX, so it probes.
    other = precision.resolve_cpu_auto(realm.store, cpuinfo=AMX)
    assert other.fingerprint == precision.fingerprint(AMX) and other.fp32_ms is not None
    assert realm.store.get_state(precision.STATE_KEY)["fingerprint"] == other.fingerprint


def test_this_machine_probes_once_and_reuses_the_result(realm):
    """On this box: whatever the probe measures, the choice follows the rule, is stored with this
    machine's fingerprint, and a second start reuses it without probing again."""
    first = precision.resolve_cpu_auto(realm.store)
    _model, flags = precision.cpu_flags()
    if not precision.native_bf16_flags(flags):
        assert first.dtype == "fp32" and first.fp32_ms is None
    else:
        assert first.bf16 == (first.fp32_ms / first.bf16_ms >= precision.MIN_SPEEDUP)
    assert realm.store.get_state(precision.STATE_KEY) == json.loads(json.dumps(first.to_dict()))
    assert precision.resolve_cpu_auto(realm.store) == first  # same timings: not probed again


def _trainer(home, forced: str):
    """A real Trainer on a tiny home whose stored probe result says `forced` for this machine."""
    from accelerate import Accelerator

    from arena.reporting import Reporter
    from arena.trainer import Trainer
    from sentinels.config import REPO_ROOT
    from sentinels.realm import Realm

    tiny_config(home, cpu_auto_bf16=True)
    realm = Realm.open(home)
    realm.init()
    # The fingerprint holds the thread count, which the trainer sets from training.threads first.
    torch.set_num_threads(realm.config.training.threads)
    fp = precision.fingerprint()
    forced_choice = precision.Choice(forced, f"forced by the test: {forced}", fp, ("amx_bf16",), 2.0, 1.0)
    realm.store.set_state(precision.STATE_KEY, forced_choice.to_dict())
    reporter = Reporter(realm.store, realm.events, interval_s=0.0)
    trainer = Trainer(realm.config, realm.home, realm.store, reporter, Accelerator(cpu=True), REPO_ROOT)
    return realm, trainer


def _one_step(trainer, tmp_path) -> tuple[float, torch.dtype]:
    """One real optimizer step on BIN chats; returns its loss and the dtype the lm_head computed in."""
    from arena.formatting import read_quest
    from arena.packing import pack

    path = tmp_path / "q.jsonl"
    path.write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in bin_chats(16)), encoding="utf-8"
    )
    data = read_quest(path, "chat_sft_v1", trainer.formatter, seed=0, quest_id=1, val_fraction=0.0)
    rows = list(pack(data.train, trainer.row_tokens))[:1]
    seen: list[torch.dtype] = []
    head = trainer.acc.unwrap_model(trainer.model).lm_head
    hook = head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        loss = trainer.train_step(rows)
    finally:
        hook.remove()
    return loss, seen[0]


@pytest.mark.parametrize("forced, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_auto_trains_under_the_stored_choice(home, tmp_path, forced, dtype):
    realm, trainer = _trainer(home, forced)
    try:
        assert trainer.cpu_bf16 is (forced == "bf16")
        loss, computed_in = _one_step(trainer, tmp_path)
        assert computed_in == dtype and 0 < loss < 20
        # Autocast computes in bf16; the weights the optimizer keeps stay fp32.
        assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
        # The stored result was reused, not probed over.
        assert realm.store.get_state(precision.STATE_KEY)["reason"] == f"forced by the test: {forced}"
    finally:
        realm.store.close()


def test_auto_stays_fp32_on_a_cpu_unless_asked(home):
    # Off by default (measured: bf16 slowed BIN L1 mastery here), even where a stored probe says bf16.
    from accelerate import Accelerator

    from arena.reporting import Reporter
    from arena.trainer import Trainer
    from sentinels.config import REPO_ROOT
    from sentinels.realm import Realm

    tiny_config(home)
    realm = Realm.open(home)
    realm.init()
    try:
        torch.set_num_threads(realm.config.training.threads)
        forced = precision.Choice("bf16", "forced", precision.fingerprint(), ("amx_bf16",), 2.0, 1.0)
        realm.store.set_state(precision.STATE_KEY, forced.to_dict())
        reporter = Reporter(realm.store, realm.events, interval_s=0.0)
        trainer = Trainer(realm.config, realm.home, realm.store, reporter, Accelerator(cpu=True), REPO_ROOT)
        assert realm.config.training.cpu_auto_bf16 is False and trainer.cpu_bf16 is False
    finally:
        realm.store.close()
