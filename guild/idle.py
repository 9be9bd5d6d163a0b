"""Idle quests' contents: the planner's decision turned into examples, then into quest lines.

`Guild.write_idle_quest` asks the planner (guild/planner.py) for a decision, and this module does the
rest, so that guild.py stays the trainer's entry point:
  - sizing (`examples_for`): a decision in tokens (guild.idle_quest_tokens) becomes examples per part
    with each part's tokens per example, measured once per (skill, level) on a small fixed sample with
    the hero's own tokenizer and chat template (`TokenCounter`); a decision in examples is kept.
  - lines (`quest_lines`): the direct part of the training level, every review part (any skill), and
    the verify part (guild/verify.py), each distinct line once, with one `epochs` for the whole file.

Why one `epochs` drives the parts' sizes: low levels have few distinct problems (BIN L1: 26 after
quarantine) and intake drops exact duplicates in a file, so the quest asks for `epochs` passes. The
epochs come from the direct part (planned / distinct); every other part then writes ceil(planned /
epochs) distinct items, so after `epochs` passes each part trained about what the planner gave it. (A
verify or review part written at its full count would be multiplied by the direct part's epochs: 500
verify lines x 77 epochs against 2,000 direct examples on BIN L1.)
"""

from __future__ import annotations

import json
import logging
import math
import random
from typing import TYPE_CHECKING, Any

from guild import evalsets, verify

if TYPE_CHECKING:
    from guild.guild import Guild

log = logging.getLogger(__name__)

SAMPLE_SIZE = 16  # problems per (skill, level) measured for tokens per example
SAMPLE_SEED = 7  # any fixed training seed (never EVAL_SEED): the measure is the same on every call
MAX_EPOCHS = 1000


class TokenCounter:
    """Tokens of one chat example as the trainer will see it: the hero's tokenizer and chat template.
    Falls back to UTF-8 bytes (never fewer than tokens for these texts) when the tokenizer cannot be
    built, logged once."""

    def __init__(self, hero_cfg, repo_root):
        self.hero_cfg, self.repo_root = hero_cfg, repo_root
        self._tok: Any = None
        self._loaded = False

    def _tokenizer(self):
        if not self._loaded:
            self._loaded = True
            try:
                from arena.hero import hero_tokenizer  # imports torch: only when a quest is sized

                self._tok = hero_tokenizer(self.hero_cfg, self.repo_root)
            except Exception as exc:  # a base model without a tokenizer must not stop idle quests
                log.warning("sizing idle quests by UTF-8 bytes: the hero's tokenizer failed: %s", exc)
        return self._tok

    def __call__(self, prompt: str, answer: str) -> int:
        tok = self._tokenizer()
        if tok is None:
            return len(prompt.encode()) + len(answer.encode()) + 16
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        text = tok.apply_chat_template(messages, tokenize=False)
        return len(tok(text, add_special_tokens=False)["input_ids"])


def tokens_per_example(guild: Guild, skill: str, level: int, kind: str) -> float:
    """Mean tokens of a direct (or verify, shown with the gold as its candidate) example; cached."""
    key = (skill, level, kind)
    cache = guild._tokens_cache
    if key not in cache:
        sample = guild.client(skill).generate(level, SAMPLE_SIZE, SAMPLE_SEED)
        count = guild.count_tokens
        if kind == "verify":
            sizes = [
                count(verify.verify_prompt(p["prompt"], p["expected"]), f"CORRECT\n{p['expected']}")
                for p in sample
            ]
        else:
            sizes = [count(p["prompt"], p["expected"]) for p in sample]
        cache[key] = sum(sizes) / max(1, len(sizes))
    return cache[key]


def examples_for(guild: Guild, action: dict[str, Any]) -> dict[str, Any]:
    """The decision's parts in examples: {"level_mix", "review_mix", "verify", "tokens_per_example"}."""
    if action["unit"] == "examples":
        return {k: action[k] for k in ("level_mix", "review_mix", "verify")} | {"tokens_per_example": {}}
    per: dict[str, float] = {}

    def n(skill: str, level: int, tokens: int, kind: str = "direct") -> int:
        if tokens <= 0:
            return 0
        tpe = per.setdefault(f"{skill}:{level}:{kind}", tokens_per_example(guild, skill, level, kind))
        return max(1, round(tokens / tpe))

    skill = action["skill"]
    return {
        "level_mix": {lv: n(skill, int(lv), t) for lv, t in action["level_mix"].items()},
        "review_mix": {
            s: {lv: n(s, int(lv), t) for lv, t in m.items()} for s, m in action["review_mix"].items()
        },
        "verify": n(skill, action["training_level"], action["verify"], "verify"),
        "tokens_per_example": {k: round(v, 1) for k, v in per.items()},
        "direct_tokens": action["level_mix"].get(str(action["training_level"]), 0),
    }


def scaled(examples: dict[str, Any], training: int, count: int) -> dict[str, Any]:
    """An explicit quest size: every part scaled to `count` examples in all, proportions kept."""
    parts = [("level_mix", None, lv, n) for lv, n in examples["level_mix"].items()]
    parts += [("review_mix", s, lv, n) for s, m in examples["review_mix"].items() for lv, n in m.items()]
    total = sum(p[3] for p in parts) + examples["verify"] or 1
    out = {"level_mix": {}, "review_mix": {}, "verify": round(examples["verify"] * count / total)}
    for where, s, lv, n in parts:
        target = out["level_mix"] if where == "level_mix" else out["review_mix"].setdefault(s, {})
        target[lv] = max(0, round(n * count / total))
    key = str(training)
    out["level_mix"][key] = (
        out["level_mix"].get(key, 0)
        + count
        - out["verify"]
        - sum(n for m in (out["level_mix"], *out["review_mix"].values()) for n in m.values())
    )
    return out | {"tokens_per_example": examples.get("tokens_per_example", {})}


def _line(skill: str, level: int, prompt: str, answer: str, **extra: Any) -> str:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return json.dumps(
        {"messages": messages, "metadata": {"skill": skill, "level": level, **extra}}, ensure_ascii=False
    )


def _epochs(guild: Guild, direct: list[str], planned: int, planned_tokens: int | None) -> int:
    """Passes over the distinct direct lines that train what was planned: by tokens when the plan is
    in tokens (distinct problems are longer than the average drawn one: short ones repeat more, so a
    count of examples would overshoot), else by examples."""
    if not direct:
        return 1
    if len(direct) == planned or not planned_tokens:
        return max(1, min(MAX_EPOCHS, math.ceil(planned / len(direct))))
    msgs = [json.loads(x)["messages"] for x in direct]
    per_pass = sum(guild.count_tokens(m[0]["content"], m[1]["content"]) for m in msgs)
    return max(1, min(MAX_EPOCHS, round(planned_tokens / max(1, per_pass))))


def quest_lines(
    guild: Guild, action: dict[str, Any], examples: dict[str, Any], seed: int
) -> tuple[list[str], int, dict]:
    """(distinct lines, epochs, what was written per part) for one idle quest."""
    skill, training = action["skill"], action["training_level"]
    banned = {s: evalsets.quarantine_set(guild.home_root, s) for s in {skill, *examples["review_mix"]}}

    def lines_of(s: str, level: int, n: int) -> list[str]:
        if n <= 0:
            return []
        items = guild.client(s).generate(level, n, seed, banned[s])
        return list(dict.fromkeys(_line(s, it["level"], it["prompt"], it["expected"]) for it in items))

    n_direct = int(examples["level_mix"].get(str(training), 0))
    direct_items = guild.client(skill).generate(training, n_direct, seed, banned[skill]) if n_direct else []
    direct = list(
        dict.fromkeys(_line(skill, it["level"], it["prompt"], it["expected"]) for it in direct_items)
    )
    epochs = _epochs(guild, direct, n_direct, examples.get("direct_tokens"))
    lines, written = list(direct), {"direct": len(direct), "review": {}, "verify": 0}
    parts = [(skill, int(lv), n) for lv, n in examples["level_mix"].items() if int(lv) != training]
    parts += [(s, int(lv), n) for s, m in examples["review_mix"].items() for lv, n in m.items()]
    for s, lv, n in parts:
        got = lines_of(s, lv, math.ceil(n / epochs))
        written["review"][f"{s}:{lv}"] = len(got)
        lines += got
    n_verify = math.ceil(examples["verify"] / epochs)
    if n_verify and direct_items:
        rng = random.Random(f"verify:{skill}:{training}:{seed}")
        pool = rng.sample(direct_items, len(direct_items))
        # Twice the problems needed: a candidate that would leak is dropped, and cycling through few
        # problems repeats lines; the first n_verify distinct ones are kept.
        problems = [pool[i % len(pool)] for i in range(2 * n_verify)]
        wrong = verify.wrong_answers(guild.store, skill, training)
        client = guild.client(skill)
        built = verify.build(problems, wrong, client.score, banned[skill], rng)
        limit = guild.config.training.max_length
        kept = [v for v in built if guild.count_tokens(v["prompt"], v["answer"]) <= limit]
        checks = list(
            dict.fromkeys(_line(skill, v["level"], v["prompt"], v["answer"], kind="verify") for v in kept)
        )
        checks = checks[:n_verify]
        written["verify"] = len(checks)
        lines += checks
    return list(dict.fromkeys(lines)), epochs, written
