"""How progress leaves the trainer: events, the published battle/hero state, and the hero's stats.

The fit loop calls one small sink, `Reporter`, and never the event log or the store directly. Only
the main process (rank 0) reports; other ranks get a Reporter with `enabled=False`.

Event kinds written here: step (throttled to one per training.event_interval_s), battle.start,
battle.end, checkpoint.saved, trainer.paused, trainer.resumed, trainer.stopped, trainer.error.

Hero stats (published as state "hero" and in step events):
    XP    = global optimizer steps taken, ever
    Level = XP // 1000
    Gold  = completed quests * 100
    ATK   = 100 * clamp((L0 - train_loss) / (L0 - L*), 0, 1)
    DEF   = 100 * clamp((L0 - val_loss) / (L0 - L*), 0, 1)
where L0 = ln(vocab size), the loss of a uniform guess (where every hero starts), and L* is
hero.target_loss (default 0). Normalising by the achievable range L0 - L* (as seed 004 does for
rewards) makes ATK and DEF comparable across heroes with different vocabularies: 50 means the hero
has removed half of the loss there was to remove, whatever its tokenizer.
"""

from __future__ import annotations

import math
import time
from typing import Any

from vault.events import EventLog
from vault.store import Store


def normalised_power(loss: float | None, vocab_size: int, target_loss: float = 0.0) -> float | None:
    """0 at the uniform-guess loss ln(vocab), 100 at target_loss (see the module docstring)."""
    if loss is None or not math.isfinite(loss):
        return None
    baseline = math.log(vocab_size)
    span = max(baseline - target_loss, 1e-9)
    return round(100.0 * min(1.0, max(0.0, (baseline - loss) / span)), 2)


def hero_stats(
    *,
    step: int,
    train_loss: float | None,
    val_loss: float | None,
    completed: int,
    vocab_size: int,
    target_loss: float = 0.0,
) -> dict[str, Any]:
    return {
        "xp": step,
        "level": step // 1000,
        "atk": normalised_power(train_loss, vocab_size, target_loss),
        "def": normalised_power(val_loss, vocab_size, target_loss),
        "gold": completed * 100,
        "completed_quests": completed,
    }


class Reporter:
    """Events and published state, throttled; a no-op when disabled (ranks other than 0)."""

    def __init__(self, store: Store, events: EventLog, *, interval_s: float, enabled: bool = True):
        self.store, self.events = store, events
        self.interval_s = interval_s
        self.enabled = enabled
        self._last_step_event = 0.0
        self.battle: dict[str, Any] = {"state": "idle"}

    def emit(self, kind: str, **payload: Any) -> None:
        if self.enabled:
            self.events.emit(kind, **payload)

    def publish(self, force: bool = False, **battle: Any) -> None:
        """Update the battle state; written to the store at most once per interval unless forced."""
        self.battle.update(battle)
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._last_step_event >= self.interval_s:
            self.store.set_state("battle", {**self.battle, "updated": time.time()})

    def step(self, payload: dict[str, Any], hero: dict[str, Any], force: bool = False) -> bool:
        """A step event + battle and hero state, throttled together; True when written."""
        if not self.enabled:
            return False
        now = time.monotonic()
        if not force and now - self._last_step_event < self.interval_s:
            self.battle.update({k: payload[k] for k in ("step", "loss", "progress", "eta_s", "tokens_per_s")})
            return False
        self._last_step_event = now
        self.events.emit("step", **payload)
        self.publish(
            force=True, **{k: payload[k] for k in ("step", "loss", "progress", "eta_s", "tokens_per_s")}
        )
        self.store.set_state("hero", hero)
        return True

    def hero(self, hero: dict[str, Any]) -> None:
        if self.enabled:
            self.store.set_state("hero", hero)
