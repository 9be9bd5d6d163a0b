"""The Guild: the one object the trainer and daemon talk to.

guild = Guild.from_realm(realm)          # or Guild(home_root, store, events, config)
guild.ensure_eval_sets()                 # at start (idempotent)
guild.evaluate(generate, step)           # every training.eval_every steps; generate(prompts, max_new_tokens)
guild.check_progress(step, completed_quests, uptime_s=None)   # after each battle / periodically
guild.write_idle_quest(realm.home.inbox) # when the queue is empty and guild.auto_generate
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guild import evalsets, planner, progression, verify
from guild.client import EVAL_SEED, SkillClient, open_skill
from guild.sizing import ExampleSizes, TokenCounter
from guild.skills import SkillError, SkillSpec, list_skills, load_skill, ready_for
from sentinels.config import REPO_ROOT, GuildConfig, RealmConfig
from vault.events import EventLog
from vault.store import Store

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger(__name__)
VERIFY_SEED_OFFSET = 1_000_003  # verify problems come from another seed than the quest's direct part
ANSWER_MARGIN = 16  # tokens of eval budget beyond the longest expected answer
QUEST_SEQ = "guild.quest_seq"


def _line(skill: str, level: int, prompt: str, answer: str, **extra: Any) -> str:
    """One quest line (skill_v1): the problem as the user turn, the answer as the assistant's."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return json.dumps(
        {"messages": messages, "metadata": {"skill": skill, "level": level, **extra}}, ensure_ascii=False
    )


def skill_catalog(cfg: GuildConfig) -> dict[str, SkillSpec | None]:
    """Every skill a reader may show, by id: the active skills (`guild.skills`), then any other skill
    file in `guild.skills_dir`. A skill whose file is missing or invalid maps to None (and is logged),
    so a page still lists it while the guild itself refuses to load it."""
    folder = evalsets.skills_dir(cfg)
    catalog: dict[str, SkillSpec | None] = {}
    for sid in dict.fromkeys([*cfg.skills, *list_skills(folder)]):
        try:
            catalog[sid] = load_skill(sid, folder)
        except SkillError as exc:
            log.warning("skill %s cannot be shown in full: %s", sid, exc)
            catalog[sid] = None
    return catalog


class Guild:
    def __init__(self, home_root: Path, store: Store, events: EventLog, config: RealmConfig):
        self.home_root = Path(home_root)
        self.store = store
        self.events = events
        self.config = config
        self.cfg = config.guild
        if not 0.0 <= self.cfg.review_share < 1.0:
            raise ValueError(f"guild.review_share must be in [0, 1), got {self.cfg.review_share}")

    @classmethod
    def from_realm(cls, realm: Realm) -> Guild:
        return cls(realm.home.root, realm.store, realm.events, realm.config)

    # --- skills ----------------------------------------------------------------------------------
    @cached_property
    def specs(self) -> dict[str, SkillSpec]:
        return {s: load_skill(s, evalsets.skills_dir(self.cfg)) for s in self.cfg.skills}

    @cached_property
    def _clients(self) -> dict[str, SkillClient]:
        return {}

    @property
    def waiting(self) -> dict[str, str]:
        """Active skills not scheduled now, each with why (`guild.skills.ready_for`). Read each time:
        a skill that needs another skill's level unlocks when that level is mastered."""
        mastered = {sid: int(v["mastered_level"]) for sid, v in progression.skill_levels(self.store).items()}
        out = {}
        for s in self.cfg.skills:
            why = ready_for(self.specs[s], self.cfg, self.config.hero, mastered)
            if why:
                out[s] = why
        return out

    @property
    def scheduled(self) -> list[str]:
        """The active skills the guild evaluates and writes idle quests for, in guild.skills order."""
        return [s for s in self.cfg.skills if s not in self.waiting]

    @cached_property
    def example_sizes(self) -> ExampleSizes:
        return ExampleSizes(TokenCounter(self.config, REPO_ROOT), self.client)

    def client(self, skill_id: str) -> SkillClient:
        if skill_id not in self._clients:
            self._clients[skill_id] = open_skill(self.specs[skill_id])
        return self._clients[skill_id]

    def threshold(self, skill_id: str) -> float:
        return progression.level_up_threshold(
            self.specs[skill_id].pass_threshold, self.cfg.level_up_threshold
        )

    def skill_state(self, skill_id: str) -> dict[str, Any]:
        spec = self.specs[skill_id]
        row = progression.skill_row(self.store, skill_id)
        mastered = int(row["mastered_level"])
        training = progression.training_level(mastered, spec.max_level)
        return {
            "skill": skill_id,
            "name": spec.name,
            "icon": spec.icon,
            "color": spec.color,
            "mastered_level": mastered,
            "training_level": training,
            "max_level": spec.max_level,
            "xp": int(row["xp"]),
            "recent_accuracy": progression.recent_accuracies(
                self.store, skill_id, training, self.cfg.level_up_window
            ),
        }

    def skills_status(self) -> list[dict[str, Any]]:
        return [self.skill_state(s) for s in self.cfg.skills]

    def ensure_eval_sets(self) -> list[Path]:
        return evalsets.ensure_eval_sets(self.home_root, self.cfg)

    def eval_set(self, skill_id: str, level: int) -> list[dict[str, Any]]:
        return evalsets.load_eval_set(self.home_root, skill_id, level, self.cfg)

    # --- evals and progression ---------------------------------------------------------------------
    def evaluate(self, generate: Callable[..., list[str]], step: int) -> list[dict[str, Any]]:
        """Eval every active skill at its training level, store rows, emit events, apply progression.

        `generate(prompts, max_new_tokens)` answers greedily. The budget is per level: the longest
        expected answer's UTF-8 bytes plus a margin (no tokenizer emits more tokens than bytes for
        these texts), so a 4-word SY answer (~90 bytes) is not cut at a fixed 64 tokens, and a
        one-line BIN answer does not wait for hundreds."""
        results = []
        for skill_id in self.scheduled:
            level = self.skill_state(skill_id)["training_level"]
            scored, seconds = self.score_skill(generate, skill_id, level)
            results.append(self.record_eval(skill_id, level, scored, step, seconds))
        return results

    def score_skill(
        self, generate: Callable[..., list[str]], skill_id: str, level: int
    ) -> tuple[list[dict[str, Any]], float]:
        """Answer and score one level's eval set without recording anything: (items, seconds).

        `evaluate` records the result as an eval; guild.champion keeps it as a checkpoint's quick
        eval instead, so a checkpoint's score never moves progression or the planner."""
        items = self.eval_set(skill_id, level)
        t0 = time.perf_counter()
        budget = max(len(it["expected"].encode()) for it in items) + ANSWER_MARGIN
        responses = generate([it["prompt"] for it in items], max_new_tokens=budget)
        if len(responses) != len(items):
            raise ValueError(f"generate returned {len(responses)} responses for {len(items)} prompts")
        client = self.client(skill_id)
        scored = [
            {
                "prompt": it["prompt"],
                "expected": it["expected"],
                "answer": resp,
                "correct": client.score(it["prompt"], it["expected"], resp),
            }
            for it, resp in zip(items, responses, strict=True)
        ]
        return scored, time.perf_counter() - t0

    def record_eval(
        self, skill_id: str, level: int, scored: list[dict[str, Any]], step: int, seconds: float
    ) -> dict[str, Any]:
        n = len(scored)
        correct = sum(1 for s in scored if s["correct"])
        accuracy = correct / n if n else 0.0
        with self.store.tx() as conn:
            cur = conn.execute(
                "INSERT INTO evals(ts, step, skill, level, n, correct, accuracy, seconds, items)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    step,
                    skill_id,
                    level,
                    n,
                    correct,
                    accuracy,
                    seconds,
                    json.dumps(scored, ensure_ascii=False),
                ),
            )
            eval_id = int(cur.lastrowid)
            conn.execute("UPDATE skills SET xp = xp + ? WHERE id = ?", (correct * level, skill_id))
        row = {
            "id": eval_id,
            "skill": skill_id,
            "level": level,
            "n": n,
            "correct": correct,
            "accuracy": accuracy,
            "step": step,
            "seconds": round(seconds, 4),
        }
        self.events.emit("eval.done", **{k: v for k, v in row.items() if k != "id"})
        planner.record_outcome(
            self.store, skill_id, {"eval_id": eval_id, "level": level, "accuracy": accuracy, "step": step}
        )
        if n and correct == n:
            progression.unlock(
                self.store, self.events, "first_perfect", skill=skill_id, level=level, step=step
            )
        row["leveled_up"] = self.apply_progression(skill_id, step)
        return row

    def apply_progression(self, skill_id: str, step: int) -> bool:
        st = self.skill_state(skill_id)
        if st["mastered_level"] >= st["max_level"]:
            return False
        if not progression.should_level_up(
            st["recent_accuracy"], self.cfg.level_up_window, self.threshold(skill_id)
        ):
            return False
        new = st["mastered_level"] + 1
        locked = set(self.waiting)
        with self.store.tx() as conn:
            conn.execute(
                "UPDATE skills SET mastered_level = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')"
                " WHERE id = ? AND mastered_level = ?",
                (new, skill_id, new - 1),
            )
        log.info("skill %s mastered level %d at step %d", skill_id, new, step)
        self.events.emit("skill.level_up", skill=skill_id, level=new, step=step)
        for unlocked in sorted(locked - set(self.waiting)):  # a skill tree: SY waits for BIN L1
            log.info("skill %s unlocked by %s level %d", unlocked, skill_id, new)
            self.events.emit("skill.unlocked", skill=unlocked, by=skill_id, level=new, step=step)
        progression.unlock(self.store, self.events, "first_level_up", skill=skill_id, step=step)
        if new >= 5:
            progression.unlock(self.store, self.events, "skill_level_5", skill=skill_id, step=step)
        if new >= 10:
            progression.unlock(self.store, self.events, "skill_level_10", skill=skill_id, step=step)
        if all(self.skill_state(s)["mastered_level"] >= 1 for s in self.cfg.skills):
            progression.unlock(self.store, self.events, "all_skills", step=step)
        return True

    def check_progress(self, step: int, completed_quests: int, uptime_s: float | None = None) -> list[str]:
        """Hero level and step/quest/uptime achievements; call after each battle (cheap)."""
        progression.check_hero(self.events, step)
        return progression.check_milestones(self.store, self.events, step, completed_quests, uptime_s)

    def on_champion(self, step: int, name: str = "") -> bool:
        """Call when a checkpoint is crowned champion (unlocks first_champion once)."""
        return progression.unlock(self.store, self.events, "first_champion", step=step, checkpoint=name)

    # --- idle quests -------------------------------------------------------------------------------
    def plan(self) -> tuple[int, dict[str, Any]]:
        views = []
        if not self.scheduled:
            waits = "; ".join(f"{s}: {why}" for s, why in self.waiting.items())
            raise ValueError(f"no skill can be scheduled for this hero ({waits})")
        for s in self.scheduled:
            st = self.skill_state(s)
            views.append(
                planner.SkillView(
                    skill=s,
                    mastered=st["mastered_level"],
                    training=st["training_level"],
                    max_level=st["max_level"],
                    recent=tuple(st["recent_accuracy"]),
                    threshold=self.threshold(s),
                    quests_since_chosen=planner.quests_since_chosen(self.store, s),
                    stall_evals=self.specs[s].stall_evals or planner.STALL_EVALS,
                    **progression.level_record(self.store, s, st["training_level"]),
                )
            )
        action = planner.decide(
            views,
            self.cfg.idle_quest_size,
            self.cfg.review_share,
            self.cfg.idle_quest_tokens,
            self.example_sizes,
        )
        inputs = {
            "skills": [v.__dict__ | {"recent": list(v.recent)} for v in views],
            "idle_quest_size": self.cfg.idle_quest_size,
            "idle_quest_tokens": self.cfg.idle_quest_tokens,
            "review_share": self.cfg.review_share,
            "waiting": sorted(self.waiting),
        }
        return planner.record(self.store, inputs, action), action

    def _lines(self, skill: str, level: int, n: int, seed: int) -> list[str]:
        """`n` generated problems of a level as distinct quest lines, that skill's evals kept out."""
        if n <= 0:
            return []
        banned = evalsets.quarantine_set(self.home_root, skill)
        items = self.client(skill).generate(level, n, seed, banned)
        return list(dict.fromkeys(_line(skill, it["level"], it["prompt"], it["expected"]) for it in items))

    def _verify_lines(self, skill: str, level: int, n: int, seed: int, wrong: list[dict]) -> list[str]:
        """`n` verify examples on fresh problems of the level (guild/verify.py: eval prompts never
        appear; the hero's wrong answers are moved onto other problems, or dropped if they leak)."""
        banned = evalsets.quarantine_set(self.home_root, skill)
        # Twice the problems needed, from another seed than the direct part: a leaking candidate is
        # dropped, and few distinct problems at low levels would otherwise repeat the direct ones.
        problems = self.client(skill).generate(level, 2 * n, seed + VERIFY_SEED_OFFSET, banned)
        rng = random.Random(f"verify:{skill}:{level}:{seed}")
        client = self.client(skill)
        built = verify.build(problems, wrong, client.score, banned, rng)[:n]
        return list(
            dict.fromkeys(_line(skill, v["level"], v["prompt"], v["answer"], kind="verify") for v in built)
        )

    def _next_seed(self) -> int:
        seq = self.store.increment_state(QUEST_SEQ)
        if seq == EVAL_SEED:
            seq = self.store.increment_state(QUEST_SEQ)  # training never reuses the eval seed
        return seq

    def write_idle_quest(self, inbox: Path, count: int | None = None) -> Path:
        """Plan, generate and drop one quest (skill_v1) plus its sidecar into the inbox."""
        self.ensure_eval_sets()
        decision_id, action = self.plan()
        skill_id = action["skill"]
        spec = self.specs[skill_id]
        mix = {int(k): v for k, v in action["level_mix"].items()}
        review = {s: {int(k): v for k, v in m.items()} for s, m in action.get("review_mix", {}).items()}
        if count is not None:  # an explicit size keeps the planner's proportions
            total = sum(mix.values()) + sum(sum(m.values()) for m in review.values())
            mix = {lv: max(0, round(n * count / total)) for lv, n in mix.items()}
            review = {s: {lv: round(n * count / total) for lv, n in m.items()} for s, m in review.items()}
            mix[action["training_level"]] += (
                count - sum(mix.values()) - sum(sum(m.values()) for m in review.values())
            )
        seed = self._next_seed()
        training = action["training_level"]
        # Verify examples take their share of the direct part, where the hero's evals at this level
        # have wrong answers to show (guild/verify.py); until then the direct part keeps it.
        n_verify = 0
        wrong = verify.wrong_answers(self.store, skill_id, training) if self.cfg.verify_share else []
        if wrong:
            n_verify = round(mix[training] * self.cfg.verify_share)
            mix[training] -= n_verify
        # Low levels have few distinct problems (BIN L1: 26 after quarantine), and intake drops exact
        # duplicates, so the quest holds each problem once and asks for enough passes (`epochs` in the
        # sidecar) to train about what the planner asked for. The direct part sets the epochs; every
        # other part (review, verify) then writes ceil(planned / epochs) distinct items, so after the
        # passes each part trained about its planned share (written at full count, a 20% part would
        # be multiplied by the direct part's epochs).
        direct = self._lines(skill_id, training, mix[training], seed)
        epochs = max(1, min(1000, -(-mix[training] // max(1, len(direct)))))
        lines, written = list(direct), {"direct": len(direct), "review": {}, "verify": 0}
        parts = [(skill_id, lv, n) for lv, n in sorted(mix.items()) if lv != training]
        parts += [(s, lv, n) for s, m in review.items() for lv, n in sorted(m.items())]
        for s, lv, n in parts:
            got = self._lines(s, lv, -(-n // epochs), seed)
            written["review"][f"{s}:{lv}"] = len(got)
            lines += got
        if n_verify:
            got = self._verify_lines(skill_id, training, -(-n_verify // epochs), seed, wrong)
            written["verify"] = len(got)
            lines += got
        lines = list(dict.fromkeys(lines))
        inbox = Path(inbox)
        inbox.mkdir(parents=True, exist_ok=True)
        level = training
        stem = f"guild-{skill_id}-L{level:02d}-s{seed:06d}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = inbox / f"{stem}.jsonl"
        sidecar = inbox / f"{stem}.jsonl.meta.json"
        meta = {
            "spec": "skill_v1",
            "priority": "low",
            "generator": {"id": spec.generator, "version": spec.generator_version},
            "skill": skill_id,
            "level": level,
            "seed": seed,
            "count": len(lines),
            "epochs": epochs,
            "source": "guild",
            "level_mix": {str(k): v for k, v in sorted(mix.items())},
            "review_mix": {s: {str(k): v for k, v in sorted(m.items())} for s, m in review.items()},
            "verify": n_verify,
            "written": written,
            "planner_decision": decision_id,
            "provenance": self.client(skill_id).info().get("provenance", {}),
        }
        # Sidecar first, then the quest under a name the watcher ignores, renamed when complete.
        sidecar.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp = inbox / f".{stem}.jsonl.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, path)
        with self.store.tx() as conn:
            conn.execute(
                "UPDATE planner_decisions SET action = json_set(action, '$.file', ?) WHERE id = ?",
                (path.name, decision_id),
            )
        self.events.emit(
            "guild.quest_written", file=path.name, skill=skill_id, level=level, count=len(lines), seed=seed
        )
        log.info("wrote idle quest %s (%d lines x %d epochs)", path, len(lines), epochs)
        return path
