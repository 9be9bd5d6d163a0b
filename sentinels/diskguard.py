"""The disk guard: a checkpoint is written only when the disk keeps `sentinels.min_free_gb` after it.

`arena/checkpoints.py` calls `DiskGuard.ensure(need, retention)` before it writes a byte. When the
home's disk would fall below the threshold, the vault's retention (the callable it is given: the
trainer's own `CheckpointManager.prune`, so the policy stays the vault's) runs first. If that is not
enough, training pauses right there, before anything is written: a `disk.low` event carries a
message saying how much to free and what is largest in the home, `trainer.paused` (reason
`disk_low`) and the published battle state say paused (so the Tavern shows it and `realm health`
does not take the wait for a stuck trainer), and the guard rechecks every few seconds. Once there is
room (space freed, or `sentinels.min_free_gb` lowered in the config, which it re-reads) it emits
`disk.ok` and `trainer.resumed` and the checkpoint is written; nothing is lost and nothing partial
ever lands. A SIGTERM while waiting (`realm down`) ends the wait with `DiskLow`: the steps since the
last checkpoint are lost, but no half-written folder exists.

Owns: the free-space rule and its message. Must not delete anything itself (retention is the
vault's), nor touch the quests or the ledger; the battle state it publishes goes through the
arena's own `Reporter`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentinels.config import RealmConfig
    from vault.events import EventLog
    from vault.store import Store

log = logging.getLogger("realm.sentinels.disk")

GB = 10**9
POLL_S = 2.0  # how often a paused guard looks again; freeing space is a human's minutes, not ms
TOP_N = 5  # the largest entries the message names


class DiskLow(RuntimeError):
    """No room for a checkpoint and the wait for it was cut short (a stop); says what to free."""


@dataclass(frozen=True)
class Room:
    """Free bytes on the disk, bytes a write needs and bytes that must stay free after it."""

    free: int
    need: int
    min_free: int

    @property
    def ok(self) -> bool:
        return self.free - self.need >= self.min_free

    @property
    def short(self) -> int:
        """Bytes to free before the write fits (0 when it fits)."""
        return max(0, self.min_free + self.need - self.free)


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", GB), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a nested state (dicts, lists, tuples); anything else counts 0.
    Duck-typed on `.nbytes`, so this module needs no torch."""
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    n = getattr(obj, "nbytes", None)
    return int(n) if isinstance(n, int) else 0


def checkpoint_need(model: Any, tensors_state: Any, previous_size: int | None) -> int:
    """Bytes the next checkpoint will take: its tensors (weights, optimizer state), or the last
    checkpoint's size when that is larger (it includes the tokenizer and configs)."""
    try:
        weights = tensor_bytes(dict(model.state_dict()))
    except AttributeError:
        weights = 0
    return max(weights + tensor_bytes(tensors_state), int(previous_size or 0))


def _size(path: Path) -> int:
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass  # removed while we walked
    return total


def largest(home: Path, n: int = TOP_N) -> list[tuple[str, int]]:
    """The largest entries of the home, two levels deep where that says more (models/<checkpoint>,
    queue/<folder>), as (relative path, bytes), largest first."""
    entries: list[tuple[str, int]] = []
    for child in sorted(Path(home).iterdir()) if Path(home).is_dir() else []:
        if child.name in ("models", "queue") and child.is_dir():
            entries += [(f"{child.name}/{c.name}", _size(c)) for c in child.iterdir()]
        else:
            entries.append((child.name, _size(child)))
    return sorted((e for e in entries if e[1] > 0), key=lambda e: -e[1])[:n]


def advice(home: Path, room: Room, deleted: Iterable[str] = ()) -> str:
    """The message a person reads: how much to free, what is largest, and what happens next."""
    deleted = list(deleted)
    ran = (
        f"retention deleted {len(deleted)} checkpoint(s) ({', '.join(deleted)}) and that was not enough"
        if deleted
        else "retention found nothing more to delete"
    )
    big = ", ".join(f"{rel} {fmt_bytes(size)}" for rel, size in largest(home))
    return (
        f"disk low: {fmt_bytes(room.free)} free at {home}; the next checkpoint needs about "
        f"{fmt_bytes(room.need)} and sentinels.min_free_gb keeps {fmt_bytes(room.min_free)} free, so "
        f"{ran}. Free at least {fmt_bytes(room.short)} on that disk (largest here: {big or 'nothing'}; "
        "`realm vault retention --dry-run` shows what retention keeps, `realm vault push` then "
        "`realm vault remove ASSET local` moves checkpoints to another zone), or lower "
        "sentinels.min_free_gb. Training is paused and resumes by itself once there is room."
    )


def stop_requested() -> bool:
    """Whether this process was asked to stop (SIGTERM/SIGINT through the guardian's handlers)."""
    from sentinels.guardian import stop_requested as requested

    return requested()


class DiskGuard:
    """Room for a write on the disk holding `root`, against a threshold that may change while it waits."""

    def __init__(
        self,
        root: Path,
        min_free: Callable[[], int],
        *,
        store: Store | None = None,
        events: EventLog | None = None,
        poll_s: float = POLL_S,
    ):
        self.root, self.min_free = Path(root), min_free
        self.store, self.events, self.poll_s = store, events, poll_s

    @classmethod
    def for_config(cls, config: RealmConfig, store: Store) -> DiskGuard:
        """The realm's guard: its home's disk, `sentinels.min_free_gb` re-read from the config on every
        check (so lowering it in realm.yaml or the Armory lets a paused trainer go on)."""
        from vault.events import EventLog

        start = int(config.sentinels.min_free_gb * GB)
        home = config.home_path

        def threshold() -> int:
            from sentinels.config import ConfigError, load_config

            try:
                return int(load_config(home=home).sentinels.min_free_gb * GB)
            except (ConfigError, OSError):
                return start  # a config being edited must not unpause or crash the trainer

        return cls(home, threshold, store=store, events=EventLog(store))

    def room(self, need: int) -> Room:
        return Room(free_bytes(self.root), int(need), self.min_free())

    def ensure(self, need: int, retention: Callable[[], list[str]] | None = None) -> Room:
        """Return once `need` bytes fit above the threshold: retention first, then a paused wait."""
        room = self.room(need)
        if room.ok:
            return room
        deleted = list(retention() if retention is not None else [])
        room = self.room(need)
        if deleted:
            log.warning("disk low: retention deleted %s; %s free now", deleted, fmt_bytes(room.free))
        if room.ok:
            return room
        return self._wait(room, deleted)

    # ---- the pause ---------------------------------------------------------------------------
    def _wait(self, room: Room, deleted: list[str]) -> Room:
        message = advice(self.root, room, deleted)
        log.error("%s", message)
        self._emit("disk.low", message=message, free=room.free, need=room.need, min_free=room.min_free,
                   short=room.short, free_gb=round(room.free / GB, 3),
                   min_free_gb=round(room.min_free / GB, 3), retention_deleted=deleted)  # fmt: skip
        self._emit("trainer.paused", reason="disk_low", message=message)
        before = self._state()
        self._publish(state="paused", paused_reason="disk_low", message=message)
        started = time.monotonic()
        while True:
            if stop_requested():
                raise DiskLow(message)
            time.sleep(self.poll_s)
            room = self.room(room.need)
            if room.ok:
                break
        waited = round(time.monotonic() - started, 1)
        log.info("disk ok again after %.0f s: %s free", waited, fmt_bytes(room.free))
        self._emit("disk.ok", free=room.free, need=room.need, min_free=room.min_free, waited_s=waited)
        self._emit("trainer.resumed", reason="disk_ok")
        self._publish(state=before or "fighting", paused_reason=None, message=None)
        return room

    def _emit(self, kind: str, **payload: Any) -> None:
        if self.events is not None:
            self.events.emit(kind, **payload)

    def _state(self) -> str | None:
        if self.store is None:
            return None
        from arena.control import battle_state

        return battle_state(self.store).get("state")

    def _publish(self, **battle: Any) -> None:
        """The battle state through the arena's own Reporter (it owns that state), so the Tavern and
        `realm health` see the pause while no step is taken."""
        if self.store is None or self.events is None:
            return
        from arena.control import battle_state
        from arena.reporting import Reporter

        rep = Reporter(self.store, self.events, interval_s=0.0)
        rep.battle = dict(battle_state(self.store))
        rep.publish(force=True, **battle)
