"""The champion: each checkpoint's eval results at save time, the one champion rule, and the move.

Owns the `checkpoint_evals` table (guild/schema.py m003) and the champion rule. The vault owns the
`champion` alias (`vault.ledger.Ledger.set_alias` keeps every move in `alias_history`); the guild only
asks it to move. The watchtower shows the board (watchtower/champion.py ranks with `rank_key` from
here, so the board and the guild cannot disagree). This module must not write the vault's tables,
train, or serve HTTP.

At every checkpoint the arena calls the guild's `on_checkpoint(generate, step, path)` hook
(guild/hooks.py), which calls `on_checkpoint` here:

1. **The checkpoint's evals** (`record_checkpoint_evals`): one row per active skill, at the skill's
   training level (mastered + 1) and with its mastered level at save time. The row copies the
   guild's eval taken at this very step and level when there is one (the trainer runs the eval hook
   just before the end-of-battle checkpoint, and wherever `eval_every` and `save_steps` meet);
   otherwise the guild runs a quick eval of the same eval set with the checkpoint's weights. Only an
   eval of the same step is reused: one taken even a step earlier scored other weights, and the
   board and `realm compare` show each answer as this checkpoint's own. A quick eval is not an
   `evals` row, so it never counts toward a level-up or the planner's stall test.
2. **The rule** (`rank_key`, `beats`). Checkpoints are ranked by, in order:
     1. mastered levels: the sum over the active skills of the mastered level at save time, higher
        is better;
     2. accuracy: the mean over the active skills of the accuracy at the training level, higher is
        better (with equal mastered levels both checkpoints were scored at the same levels);
     3. val loss: the ledger's (the checkpoint's quest's validation split), lower is better; a
        checkpoint without one ranks last on this key. It only breaks ties.
   A challenger beats the champion when it is better on the first key that differs. Equal on all
   three is not better, so a checkpoint that scores no better never moves the alias (and the board
   puts the earlier of two equal checkpoints first, as the rule would have kept it). A champion with
   no recorded evals (set by hand to an unevaluated checkpoint, or a model) is beaten by any
   evaluated checkpoint.
3. **The move**: the guild asks the vault to point `champion` at the winner (by "guild", with the
   reason), emits `champion.new` (the Tavern toasts "New champion!") and unlocks the first_champion
   achievement. The Oracle resolves `dio@champion` through the vault on every request, so it follows.
   The arena calls the hook before retention thins models/, so the vault spares the new champion
   at once. A checkpoint that was never judged (the process died between its save and its hook)
   has no evals: the board lists it unranked, and the rule never considers it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guild.guild import Guild
    from vault.ledger import Ledger
    from vault.store import Store

log = logging.getLogger(__name__)

CHAMPION = "champion"
NEW_CHAMPION_EVENT = "champion.new"
EVALUATED_EVENT = "checkpoint.evaluated"
RULE = (
    "mastered levels (sum over active skills) higher, then mean accuracy at the training level higher,"
    " then val loss lower; the champion moves only when a checkpoint is better on the first key that differs"
)
COLUMNS = "checkpoint, step, skill, level, mastered_level, n, correct, accuracy, source, eval_id, seconds, ts"
_COLS = tuple(COLUMNS.split(", "))


class ChampionError(Exception):
    """The champion rule cannot be applied (the checkpoint has no evals or is not in the ledger)."""


@dataclass(frozen=True)
class Score:
    """One checkpoint's place under the rule, from its checkpoint_evals rows and its ledger row."""

    checkpoint: str
    step: int
    mastered: int
    accuracy: float
    val_loss: float | None
    skills: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        per = ", ".join(
            f"{s} L{v['level']} {round(100 * v['accuracy'])}%" for s, v in sorted(self.skills.items())
        )
        loss = "none" if self.val_loss is None else f"{self.val_loss:.4f}"
        return f"mastered {self.mastered}, accuracy {100 * self.accuracy:.1f}% ({per}), val loss {loss}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "step": self.step,
            "mastered": self.mastered,
            "accuracy": self.accuracy,
            "val_loss": self.val_loss,
            "skills": self.skills,
        }


def score(name: str, step: int, rows: Iterable[dict[str, Any]], val_loss: float | None) -> Score | None:
    """The Score of one checkpoint from its checkpoint_evals rows; None when it has none."""
    skills = {
        r["skill"]: {
            "level": int(r["level"]),
            "mastered_level": int(r["mastered_level"]),
            "accuracy": float(r["accuracy"]),
            "n": int(r["n"]),
            "correct": int(r["correct"]),
            "source": r["source"],
        }
        for r in rows
    }
    if not skills:
        return None
    # Rounded so that the same per-skill results always give the same mean, whatever the float path.
    accuracy = round(sum(v["accuracy"] for v in skills.values()) / len(skills), 9)
    mastered = sum(v["mastered_level"] for v in skills.values())
    return Score(name, int(step), mastered, accuracy, val_loss, skills)


def rank_key(s: Score) -> tuple[int, float, float]:
    """The rule as a sort key, larger is better: (mastered, accuracy, -val_loss)."""
    loss = s.val_loss if s.val_loss is not None and math.isfinite(s.val_loss) else math.inf
    return (s.mastered, s.accuracy, -loss)


def beats(challenger: Score, champion: Score | None) -> tuple[bool, str]:
    """Whether `challenger` beats `champion` under the rule, and why (the alias history's reason)."""
    if champion is None:
        return True, f"{challenger.checkpoint}: the first evaluated champion ({challenger.describe()})"
    if challenger.checkpoint == champion.checkpoint:
        return False, f"{challenger.checkpoint} is the champion"
    a, b = rank_key(challenger), rank_key(champion)
    labels = ("mastered levels", "accuracy", "val loss")
    shown = (
        lambda s: str(s.mastered),
        lambda s: f"{100 * s.accuracy:.1f}%",
        lambda s: "none" if s.val_loss is None else f"{s.val_loss:.4f}",
    )
    for i, label in enumerate(labels):
        if a[i] == b[i]:
            continue
        better = a[i] > b[i]
        sign = (">" if better else "<") if i < 2 else ("<" if better else ">")
        equal = "".join(f", equal {labels[j]} {shown[j](challenger)}" for j in range(i))
        verdict = "beats" if better else "does not beat"
        why = f"{label} {shown[i](challenger)} {sign} {shown[i](champion)}{equal}"
        return better, f"{challenger.checkpoint} {verdict} {champion.checkpoint}: {why}"
    return False, (
        f"{challenger.checkpoint} ties {champion.checkpoint} ({challenger.describe()}); the champion stays"
    )


# ---- the checkpoint's evals -----------------------------------------------------------------------
def record_checkpoint_evals(
    guild: Guild, generate: Callable[..., list[str]], step: int, checkpoint: str
) -> list[dict[str, Any]]:
    """Store the checkpoint's eval result for each active skill (the guild's eval at this step and
    level, else a quick one); returns the rows written, without their items.

    A checkpoint saved again at the same step (a stop right after a periodic save) has the same
    weights, so a skill whose row already holds this step, level and mastered level keeps it."""
    rows = []
    for skill_id in guild.scheduled:
        st = guild.skill_state(skill_id)
        level, mastered = st["training_level"], st["mastered_level"]
        if guild.store.one(
            "SELECT 1 FROM checkpoint_evals WHERE checkpoint = ? AND skill = ? AND step = ?"
            " AND level = ? AND mastered_level = ?",
            (checkpoint, skill_id, step, level, mastered),
        ):
            continue
        ev = guild.store.one(
            "SELECT id, n, correct, accuracy, seconds, items FROM evals"
            " WHERE step = ? AND skill = ? AND level = ? ORDER BY id DESC LIMIT 1",
            (step, skill_id, level),
        )
        if ev is not None:
            source, eval_id, items = "guild", int(ev["id"]), ev["items"]
            n, correct, seconds = int(ev["n"]), int(ev["correct"]), ev["seconds"]
        else:
            scored, seconds = guild.score_skill(generate, skill_id, level)
            source, eval_id, items = "quick", None, json.dumps(scored, ensure_ascii=False)
            n, correct = len(scored), sum(1 for s in scored if s["correct"])
        row = {
            "checkpoint": checkpoint,
            "step": int(step),
            "skill": skill_id,
            "level": level,
            "mastered_level": mastered,
            "n": n,
            "correct": correct,
            "accuracy": correct / n if n else 0.0,
            "source": source,
            "eval_id": eval_id,
            "seconds": round(seconds, 4) if seconds is not None else None,
            "ts": time.time(),
        }
        with guild.store.tx() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO checkpoint_evals ({COLUMNS}, items)"
                f" VALUES ({', '.join('?' * (len(_COLS) + 1))})",
                (*(row[c] for c in _COLS), items),
            )
        rows.append(row)
    if not rows:
        return rows
    guild.events.emit(
        EVALUATED_EVENT,
        name=checkpoint,
        step=int(step),
        skills={r["skill"]: {k: r[k] for k in ("level", "accuracy", "source")} for r in rows},
    )
    return rows


def checkpoint_evals(store: Store, checkpoint: str, *, items: bool = True) -> list[dict[str, Any]]:
    """A checkpoint's eval rows by skill (with every problem, answer and verdict when `items`)."""
    cols = f"{COLUMNS}, items" if items else COLUMNS
    rows = store.query(
        f"SELECT {cols} FROM checkpoint_evals WHERE checkpoint = ? ORDER BY skill", (checkpoint,)
    )
    if items:
        for r in rows:
            r["items"] = json.loads(r["items"])
    return rows


def score_of(store: Store, ledger: Ledger, ref: str | int) -> Score | None:
    """The Score of the checkpoint `ref` names (anything the ledger resolves); None without evals."""
    row = ledger.get(ref)
    if row is None:
        return None
    return score(row["name"], row["step"], checkpoint_evals(store, row["name"], items=False), row["val_loss"])


# ---- the verdict and the move ---------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    moved: bool
    reason: str
    challenger: Score
    previous: Score | None
    previous_name: str | None


def judge(guild: Guild, ledger: Ledger, checkpoint: str) -> Verdict:
    """Apply the rule to `checkpoint` against the current champion; move the alias when it wins."""
    challenger = score_of(guild.store, ledger, checkpoint)
    if challenger is None:
        raise ChampionError(f"{checkpoint} has no recorded evals (or no ledger row) to judge")
    current = ledger.get(CHAMPION) if ledger.alias(CHAMPION) else None
    previous_name = current["name"] if current else ledger.alias(CHAMPION)
    previous = score_of(guild.store, ledger, current["name"]) if current else None
    if current is not None and current["name"] == challenger.checkpoint:
        return Verdict(False, f"{checkpoint} is the champion", challenger, previous, previous_name)
    if previous is None and previous_name is not None:
        won = True
        reason = f"{checkpoint} beats {previous_name}, which has no recorded evals ({challenger.describe()})"
    else:
        won, reason = beats(challenger, previous)
    if not won:
        log.info("champion stays: %s", reason)
        return Verdict(False, reason, challenger, previous, previous_name)
    moved = ledger.set_alias(CHAMPION, challenger.checkpoint, by="guild", reason=reason)
    log.info("new champion: %s", reason)
    guild.events.emit(
        NEW_CHAMPION_EVENT,
        name=challenger.checkpoint,
        step=challenger.step,
        previous=previous_name,
        previous_step=previous.step if previous else (current["step"] if current else None),
        reason=reason,
        mastered=challenger.mastered,
        accuracy=challenger.accuracy,
        val_loss=challenger.val_loss,
        skills={s: v["accuracy"] for s, v in challenger.skills.items()},
        asset_id=moved["asset_id"],
    )
    guild.on_champion(challenger.step, challenger.checkpoint)
    return Verdict(True, reason, challenger, previous, previous_name)


def on_checkpoint(
    guild: Guild, ledger: Ledger, generate: Callable[..., list[str]], step: int, checkpoint: str
) -> Verdict | None:
    """The arena's checkpoint hook: record the checkpoint's evals, then judge it (None: the same
    checkpoint saved again with the evals it already had, judged already)."""
    if not record_checkpoint_evals(guild, generate, step, checkpoint):
        return None
    return judge(guild, ledger, checkpoint)
