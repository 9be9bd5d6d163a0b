"""The quest planner: what the guild generates next, chosen from a finite action space.

Action = (skill, level mix, count). The skill is one of the active skills; the mix puts
(1 - review_share) of the examples on the training level and spreads review_share over up to the
last REVIEW_LEVELS mastered levels (so earlier levels are not forgotten); the count is one of
COUNT_FACTORS x guild.idle_quest_size.

Heuristic baseline (`heuristic_v2`), in the spirit of a policy we can later learn from its records:
  - skill: the one furthest below its level-up threshold (mean of its recent evals at the training
    level; a skill never evaluated there counts as 0), plus 0.15 per quest since it was last chosen so
    no skill starves; ties go to the order of guild.skills.
  - count: x2 when that mean is below 0.3 (far from the goal: more practice before the next eval),
    x0.5 when it is at or above 0.6 (close: let the next eval come sooner), else x1.
  - stalled skills wait (new in v2): a skill with at least STALL_EVALS evals at its training level,
    none of them above 0, is only chosen once STALL_RETRY other quests have passed since it was last
    chosen (unless every skill is stalled), and then on a x0.25 quest. Why: the gap rule alone gives
    most of the time to the skill the hero is worst at, and a skill it cannot learn yet stays the
    worst forever. The default DIO (2.4M parameters, no pretraining) scores 0 on SY level 1 after 20
    minutes of SY alone (docs/PERFORMANCE.md); v1 chose SY at least every other idle quest, and an SY
    example is ~10x a BIN one in tokens, so SY took most of a default realm's steps. A small hero also
    forgets: a run where a stalled SY still came back every third quest (a quarter of its gap, plus
    the starvation bonus) saw BIN fall from 0.8 to 0 after each 512-example SY quest. The retry keeps
    a stalled skill from being written off, and one eval above 0 ends the stall. "None ever above 0"
    and not "the last few at 0": a skill learned a little and then forgotten while another trained is
    learnable, and must not wait (a first version of v2 made BIN stall that way).
v4 (now) adds three rules to v2, each kept off the path that masters BIN L1 in a fresh realm:
  - sized by compute: a quest's examples are capped at guild.idle_quest_tokens x its count factor,
    in the hero's tokens per example (measured by guild/sizing.py). BIN examples are short, so the
    example count (idle_quest_size) still binds there; an SY puzzle is ~10x longer, so an SY quest
    that was 4,096 examples (~700 steps, ~13 minutes on 2 cores) is now ~900 (~130 steps).
  - probes: where several skills are scheduled, one with no eval yet gets a x0.25 quest first, then
    the gap rule sizes the next one from what that eval showed. A probe decides how to share the
    compute between skills; a realm with one scheduled skill (a default realm with DIO, where SY
    waits) has nothing to share, and a probe there only delayed BIN L1 (measured: step 1,360 against
    ~730 without, docs/PERFORMANCE.md).
  - a skill's patience is its own: `eval.stall_evals` in its file overrides STALL_EVALS. DIO's first
    whole SY L1 puzzle came at its 49th eval (step 2,776 of SY alone; L1 at step 4,422, 41.5 min), so
    SY waits 100 evals before it is called stalled.
  - a stalled skill's x0.25 quest, likewise, only while another scheduled skill is not stalled: SY
    trained alone (`bench/learning.py --skill sy`) otherwise ran on 112-example quests, each ended by
    an eval, from its sixth eval on (an eval every ~16 steps instead of every 100).
  - review from every skill: the review share is spread over the last REVIEW_LEVELS mastered levels
    of every scheduled skill (a 512-example SY quest took BIN from 0.8 to 0 in a v1 realm), in equal
    tokens per (skill, level); `review_mix` in the decision records what each got.
v3 (token-sized quests, probes, cross-skill review and verify quests at once) was reverted after a
fresh BIN realm did not master L1 in 1,700 steps (docs/PERFORMANCE.md); v4 is those rules one at a
time, measured.
Every decision is stored in planner_decisions with its inputs; the outcome (the next eval of that
skill) is written into the same row when it arrives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vault.store import Store

POLICY = "heuristic_v4"
POLICIES = ("heuristic_v2", POLICY)  # starvation counts read both: a home keeps its history
COUNT_FACTORS = (0.25, 0.5, 1.0, 2.0)
REVIEW_LEVELS = 5
STARVATION_BONUS = 0.15
STALL_EVALS = 6  # evals at the training level, none above 0: 1,200 steps at eval_every 200
STALL_RETRY = 8  # quests a stalled skill waits between tries


@dataclass(frozen=True)
class SkillView:
    skill: str
    mastered: int
    training: int
    max_level: int
    recent: tuple[float, ...]
    threshold: float
    quests_since_chosen: int
    evals_at_level: int = 0  # evals at the training level so far
    best_at_level: float = 0.0  # the best of them
    stall_evals: int = STALL_EVALS  # the skill file's eval.stall_evals, else the default

    @property
    def mean(self) -> float:
        """Mean of the recent evals at the training level; 0 for a skill never evaluated there."""
        return sum(self.recent) / len(self.recent) if self.recent else 0.0

    def gap(self) -> float:
        return max(0.0, self.threshold - self.mean)

    @property
    def stalled(self) -> bool:
        return self.evals_at_level >= self.stall_evals and self.best_at_level <= 0.0

    @property
    def probe(self) -> bool:
        """Never evaluated at all: a small quest first, to see whether it learns."""
        return self.mastered == 0 and self.evals_at_level == 0 and not self.recent

    @property
    def due(self) -> bool:
        return not self.stalled or self.quests_since_chosen >= STALL_RETRY

    def priority(self) -> float:
        return self.gap() + STARVATION_BONUS * self.quests_since_chosen


def level_mix(training: int, mastered: int, count: int, review_share: float) -> dict[int, int]:
    review = review_levels(mastered)
    n_review = round(count * review_share) if review else 0
    mix = {training: count - n_review}
    for i, lv in enumerate(review):
        # Spread evenly; the remainder goes to the most recently mastered levels.
        share = n_review // len(review) + (1 if i >= len(review) - n_review % len(review) else 0)
        if share:
            mix[lv] = mix.get(lv, 0) + share
    return mix


def review_levels(mastered: int) -> list[int]:
    """The mastered levels a quest reviews: the last REVIEW_LEVELS of them."""
    return list(range(max(1, mastered - REVIEW_LEVELS + 1), mastered + 1)) if mastered >= 1 else []


def decide(
    views: list[SkillView],
    base_count: int,
    review_share: float,
    quest_tokens: int | None = None,
    tokens_per_example: Callable[[str, int], float] | None = None,
) -> dict[str, Any]:
    """The next idle quest. Without `tokens_per_example` it is sized in examples only, and reviews
    only its own skill (v2's action); with it, capped by `quest_tokens` and reviewing every skill."""
    if not views:
        raise ValueError("no active skills to plan for; set guild.skills in configs/realm.yaml")
    pool = [v for v in views if v.due] or views
    best = max(pool, key=lambda v: (v.priority(), -views.index(v)))
    probe = best.probe and len(views) > 1
    # A stalled skill's quarter-size quest gives the compute back to a skill that is learning; with
    # none (a lone skill, or every skill stalled) it would only buy more evals per step.
    backs_off = best.stalled and any(not v.stalled for v in views if v is not best)
    factor = 0.25 if backs_off or probe else 0.5 if best.mean >= 0.6 else 2.0 if best.mean < 0.3 else 1.0
    count = max(1, int(base_count * factor))
    action: dict[str, Any] = {
        "skill": best.skill,
        "training_level": best.training,
        "count_factor": factor,
        "stalled": best.stalled,
        "probe": probe,
    }
    if tokens_per_example is None or quest_tokens is None:
        mix = level_mix(best.training, best.mastered, count, review_share)
        return action | {
            "count": count,
            "sized_by": "examples",
            "level_mix": {str(k): v for k, v in sorted(mix.items())},
            "review_mix": {},
        }
    tpe = {f"{best.skill}:{best.training}": tokens_per_example(best.skill, best.training)}
    by_tokens = int(quest_tokens * factor / max(1.0, tpe[f"{best.skill}:{best.training}"]))
    sized_by = "tokens" if by_tokens < count else "examples"
    count = max(1, min(count, by_tokens))
    pairs = [(v.skill, lv) for v in views for lv in review_levels(v.mastered)]
    n_review = round(count * review_share) if pairs else 0
    direct_tokens = tpe[f"{best.skill}:{best.training}"]
    review: dict[str, dict[str, int]] = {}
    for skill, lv in pairs:
        key = f"{skill}:{lv}"
        tpe[key] = tokens_per_example(skill, lv)
        # Equal tokens for every reviewed (skill, level): n_review direct examples' worth in all.
        n = max(1, round(n_review * direct_tokens / len(pairs) / max(1.0, tpe[key])))
        review.setdefault(skill, {})[str(lv)] = n
    own = review.pop(best.skill, {})
    mix = {str(best.training): count - n_review, **own}
    return action | {
        "count": count - n_review + sum(own.values()) + sum(sum(m.values()) for m in review.values()),
        "sized_by": sized_by,
        "level_mix": dict(sorted(mix.items(), key=lambda kv: int(kv[0]))),
        "review_mix": review,
        "tokens_per_example": {k: round(v, 1) for k, v in tpe.items()},
    }


def quests_since_chosen(store: Store, skill: str) -> int:
    rows = store.query(
        "SELECT json_extract(action, '$.skill') AS s FROM planner_decisions WHERE policy IN (?, ?)"
        " ORDER BY id DESC LIMIT 50",
        POLICIES,
    )
    for i, r in enumerate(rows):
        if r["s"] == skill:
            return i
    return len(rows)


def record(store: Store, inputs: dict[str, Any], action: dict[str, Any]) -> int:
    with store.tx() as conn:
        cur = conn.execute(
            "INSERT INTO planner_decisions(ts, policy, inputs, action) VALUES (?, ?, ?, ?)",
            (time.time(), POLICY, json.dumps(inputs, sort_keys=True), json.dumps(action, sort_keys=True)),
        )
        return int(cur.lastrowid)


def record_outcome(store: Store, skill: str, outcome: dict[str, Any]) -> int | None:
    """Attach an eval result to the latest open decision for that skill; returns its id."""
    row = store.one(
        "SELECT id FROM planner_decisions WHERE outcome IS NULL AND json_extract(action, '$.skill') = ?"
        " ORDER BY id DESC LIMIT 1",
        (skill,),
    )
    if row is None:
        return None
    with store.tx() as conn:
        conn.execute(
            "UPDATE planner_decisions SET outcome = ? WHERE id = ?", (json.dumps(outcome), row["id"])
        )
    return int(row["id"])
