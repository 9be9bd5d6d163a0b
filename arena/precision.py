"""`training.precision: auto` on a CPU: train under bf16 autocast only where this CPU does it faster.

Machines of the same kind differ: a 2-core Xeon with AMX measured 2.0 TFLOP/s in bf16 matmul against
0.25 in fp32, and a DIO step under bf16 autocast took 290 ms against 490 ms; most CPUs have no native
bf16 and run it slower than fp32 (emulated). So `auto` decides per machine, in two stages:

1. Flags: without `amx_bf16` or `avx512_bf16` in /proc/cpuinfo the CPU has no native bf16 and the
   answer is fp32, with no timing at all.
2. A short timed probe (about a second): a forward and backward pass of a DIO-sized MLP block
   (2,048 tokens, d=192 -> 768 -> 192) in fp32 and under bf16 autocast, interleaved, best of
   several rounds (the best, not the mean: on a shared box other processes only ever add time).
   bf16 is chosen only when it is at least MIN_SPEEDUP times faster: autocast adds casts around every
   matmul, and a marginal win on the probe can be a loss on a whole step.

The result is kept in the home (the state table, key STATE_KEY) with a fingerprint of what it depends
on (CPU model, native-bf16 flags, torch version, thread count); a home moved to another machine, or a
new torch, probes again, and every later start reuses the result without timing anything. On a GPU,
or with an explicit fp32/bf16/fp16, the accelerator's mixed precision (arena/daemon.py) decides and
this module is not asked.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("realm.precision")

STATE_KEY = "arena.precision_probe"
NATIVE_FLAGS = ("amx_bf16", "avx512_bf16")
MIN_SPEEDUP = 1.3  # bf16 must beat fp32 by this factor on the probe to be chosen
PROBE_ROUNDS = 3
PROBE_TOKENS, PROBE_D, PROBE_FF = 2048, 192, 768  # DIO's width (configs/heroes/dio.yaml)


class PrecisionError(ValueError):
    """A stored probe result that cannot be read."""


@dataclass(frozen=True)
class Choice:
    """What `auto` chose on this CPU, and why."""

    dtype: str  # "bf16" (autocast) or "fp32"
    reason: str
    fingerprint: str
    native_flags: tuple[str, ...] = ()
    fp32_ms: float | None = None
    bf16_ms: float | None = None

    @property
    def bf16(self) -> bool:
        return self.dtype == "bf16"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "native_flags": list(self.native_flags)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Choice:
        try:
            return cls(**{**data, "native_flags": tuple(data.get("native_flags") or ())})
        except TypeError as exc:
            raise PrecisionError(f"stored precision probe {data!r} is not readable: {exc}") from exc


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """(CPU model name, flags) from /proc/cpuinfo's text (read when not given); empty off Linux."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def native_bf16_flags(flags: set[str]) -> tuple[str, ...]:
    return tuple(f for f in NATIVE_FLAGS if f in flags)


def fingerprint(cpuinfo: str | None = None) -> str:
    """What a probe result depends on; a different value means probe again."""
    model, flags = cpu_flags(cpuinfo)
    native = ",".join(native_bf16_flags(flags)) or "none"
    return f"{model}|{native}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def _probe_ms(bf16: bool, x: torch.Tensor, up: torch.nn.Linear, down: torch.nn.Linear) -> float:
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = down(torch.nn.functional.silu(up(x)))
    y.float().square().mean().backward()
    return (time.perf_counter() - t0) * 1000


def probe() -> tuple[float, float]:
    """Best-of-rounds milliseconds of one fp32 and one bf16-autocast forward+backward (DIO-sized)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_TOKENS, PROBE_D, generator=gen, requires_grad=True)
    up, down = torch.nn.Linear(PROBE_D, PROBE_FF), torch.nn.Linear(PROBE_FF, PROBE_D)
    best = {False: float("inf"), True: float("inf")}
    for bf16 in (False, True):  # warm-up: the first call of each kind pays for kernel selection
        _probe_ms(bf16, x, up, down)
    for _ in range(PROBE_ROUNDS):
        for bf16 in (False, True):  # interleaved, so a burst of load hits both sides alike
            best[bf16] = min(best[bf16], _probe_ms(bf16, x, up, down))
    return best[False], best[True]


def decide(native: tuple[str, ...], timings: tuple[float, float] | None, fprint: str) -> Choice:
    """The rule, without side effects: flags first, then the probe's speedup."""
    if not native:
        return Choice("fp32", "the CPU has no native bf16 (no amx_bf16/avx512_bf16 flag)", fprint)
    if timings is None:
        raise ValueError("a CPU with native bf16 needs probe timings to decide")
    fp32_ms, bf16_ms = timings
    speedup = fp32_ms / bf16_ms if bf16_ms > 0 else 0.0
    if speedup >= MIN_SPEEDUP:
        why = f"bf16 autocast ran the probe {speedup:.2f}x faster than fp32 ({', '.join(native)})"
        return Choice("bf16", why, fprint, native, round(fp32_ms, 3), round(bf16_ms, 3))
    why = f"bf16 autocast was only {speedup:.2f}x fp32's speed on the probe (needs {MIN_SPEEDUP}x)"
    return Choice("fp32", why, fprint, native, round(fp32_ms, 3), round(bf16_ms, 3))


def resolve_cpu_auto(store, cpuinfo: str | None = None) -> Choice:
    """`auto` on a CPU: the stored result when its fingerprint matches this machine, else probe once
    and store it. `store` is the realm's vault.store.Store."""
    fprint = fingerprint(cpuinfo)
    stored = store.get_state(STATE_KEY)
    if isinstance(stored, dict) and stored.get("fingerprint") == fprint:
        choice = Choice.from_dict(stored)
        log.info("precision auto: %s (stored probe result: %s)", choice.dtype, choice.reason)
        return choice
    _model, flags = cpu_flags(cpuinfo)
    native = native_bf16_flags(flags)
    choice = decide(native, probe() if native else None, fprint)
    store.set_state(STATE_KEY, choice.to_dict())
    log.info("precision auto: %s (probed: %s)", choice.dtype, choice.reason)
    return choice
