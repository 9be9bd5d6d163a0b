"""Verify examples: the hero's eval mistakes become practice at judging answers (issue #16, item 6).

The original system kept 20% discrimination ("is this answer right?") to 80% direct practice. Here a
verify example shows a problem and a proposed answer; the assistant says CORRECT or INCORRECT on its
first line, then gives the gold answer:

    user:      <problem>\n\nProposed answer:\n<candidate>\n\n<VERIFY_QUESTION>
    assistant: INCORRECT\n<gold answer>          (or CORRECT\n<gold answer>)

**Quarantine.** Eval items never become training problems, and their prompts never appear in a quest.
What the evals give is the hero's *wrong answers*: each one is attached, as the proposed answer, to a
freshly generated problem of the same skill and level that is not an eval item (the guild's usual
exclusion by key and prompt). So an eval problem reaches training only through an answer shown under
another problem, never as a problem, and never with its own gold answer paired to its own prompt.
  - Where a skill's gold answer starts by restating the problem (BIN: `add(①⓪①, ①①) = ①⓪⓪⓪`; the
    head is the part before " = " when it occurs in the prompt), the head of the hero's answer is the
    eval problem's; it is swapped for the new problem's head (`retarget`). What stays is the hero's
    own wrong value: a hard negative for the new problem, and the eval problem's call is gone.
  - A candidate that still contains the eval problem's head, or any eval prompt of the skill, is
    dropped (`leaks`): a hero that echoes its prompt would otherwise carry the prompt into training.
  - Half the examples show the hero's wrong answer, half the new problem's gold answer, so the label
    carries information. The label is the skill's own scorer's verdict on the candidate for the new
    problem, never assumed: a transplanted answer that happens to be right there is labelled CORRECT.
Verify examples exist only where the hero's evals at that level have wrong answers; until then the
planner gives their share to direct practice.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from typing import Any

from guild.generators import norm_prompt
from vault.store import Store

EVALS_SCANNED = 20  # the last evals of a level whose wrong answers are used
VERIFY_QUESTION = "Is the proposed answer correct? Reply CORRECT or INCORRECT on the first line, then give the correct answer."
LABELS = ("CORRECT", "INCORRECT")


def wrong_answers(store: Store, skill: str, level: int, scanned: int = EVALS_SCANNED) -> list[dict[str, str]]:
    """Distinct non-empty wrong answers from the last `scanned` evals of a skill's level, newest first,
    less those that repeat their eval prompt: [{"prompt", "expected", "answer"}] (the eval item's
    prompt and gold, and the hero's answer)."""
    rows = store.query(
        "SELECT items FROM evals WHERE skill = ? AND level = ? ORDER BY id DESC LIMIT ?",
        (skill, level, scanned),
    )
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        for it in json.loads(row["items"] or "[]"):
            answer = (it.get("answer") or "").strip()
            # An answer that repeats its own eval prompt (a hero that echoes) is of no use: dropped here.
            echoes = norm_prompt(it["prompt"]) in norm_prompt(answer)
            if not it.get("correct") and answer and not echoes and answer not in out:
                out[answer] = {"prompt": it["prompt"], "expected": it["expected"], "answer": answer}
    return list(out.values())


def head(expected: str, prompt: str) -> str:
    """The part of a gold answer that restates the problem ("add(①⓪①, ①①)"), or "" if it has none."""
    left, sep, _ = expected.partition(" = ")
    left = left.strip()
    return left if sep and left and left in prompt else ""


def retarget(wrong: dict[str, str], prompt: str, expected: str) -> str:
    """The hero's wrong answer to an eval item, moved onto another problem (see the module docstring)."""
    old, new = head(wrong["expected"], wrong["prompt"]), head(expected, prompt)
    answer = wrong["answer"]
    if old and new and answer.startswith(old):
        return new + answer[len(old) :]
    return answer


def leaks(candidate: str, wrong: dict[str, str], eval_keys: Iterable[str], prompt: str) -> bool:
    """Would this candidate carry an eval item into training: its problem's head, or any eval prompt,
    that the new problem's own prompt does not already show? (Training problems may restate an eval
    problem in another phrasing, guild/evalsets.py `quarantine_set`; what must not come from the
    eval is text the new problem does not have.)"""
    text, own = norm_prompt(candidate), norm_prompt(prompt)
    old = norm_prompt(head(wrong["expected"], wrong["prompt"]))
    if old and old in text and old not in own:
        return True
    return any(key in text and key not in own for key in eval_keys)


def verify_prompt(prompt: str, candidate: str) -> str:
    return f"{prompt}\n\nProposed answer:\n{candidate}\n\n{VERIFY_QUESTION}"


def build(
    problems: list[dict[str, Any]],
    wrong: list[dict[str, str]],
    score: Callable[[str, str, str], bool],
    eval_keys: set[str],
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Verify examples for fresh (non-eval) `problems` of one level: alternately a hero's wrong answer
    (drawn from `wrong`) and the gold, labelled by `score(prompt, expected, candidate)`. Returns
    [{"prompt", "answer", "label", "level"}]; none without wrong answers."""
    if not wrong:
        return []
    out = []
    order = rng.sample(wrong, len(wrong))
    for i, p in enumerate(problems):
        if i % 2 == 0:
            w = order[(i // 2) % len(order)]
            candidate = retarget(w, p["prompt"], p["expected"])
            if leaks(candidate, w, eval_keys, p["prompt"]):
                continue
        else:
            candidate = p["expected"]
        label = LABELS[0] if score(p["prompt"], p["expected"], candidate) else LABELS[1]
        out.append(
            {
                "prompt": verify_prompt(p["prompt"], candidate),
                "answer": f"{label}\n{p['expected']}",
                "label": label,
                "level": p["level"],
            }
        )
    return out
