"""Formatting by spec: one JSONL record -> token ids + per-token loss weights.

The weight of token t says how much predicting t counts in the loss (0 = context only):

| spec | record | weight 1 | other weights |
| --- | --- | --- | --- |
| chat_sft_v1, skill_v1 | `messages: [{role, content}]` | every assistant turn, its end marker included | 0 |
| completion_v1 | `prompt` + `completion` | the completion + eos | prompt 0 |
| completion_v1 | `text` | all of it + eos | |
| metacog_v1 | `text` with one `<think>..</think>` and one `<answer>..</answer>` | the answer span + eos | think span: training.think_weight; the rest 0 |

What a record may hold, and which spec a record without one is, belong to `arena.intake.specs`
(the one owner of the spec rules): every record is checked by its spec's validator before it is
formatted, so the trainer never learns from a shape intake would refuse.

Chat records go through the hero's own chat template, whatever it is: the assistant spans are found
by rendering the conversation prefix by prefix (the text the template adds for turn i is turn i's),
then tokenizing the whole conversation once with character offsets. This works for any template
that renders earlier turns unchanged, which is what chat templates do for training text.

Overlong rule (training.overlong): an example longer than max_length tokens is either cut to its
first max_length tokens (`truncate`; dropped anyway if no weighted token survives) or dropped
(`refuse`). Both are counted in `FormatStats` and reported in the battle.start event.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from arena.intake.specs import CHAT_SPECS, SPECS, detect_spec


class FormatError(ValueError):
    """A record that does not fit its spec; the message names the field."""


@dataclass
class Example:
    ids: list[int]
    weights: list[float]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class FormatStats:
    examples: int = 0
    truncated: int = 0
    refused: int = 0
    bad: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"}


class Formatter:
    def __init__(self, tokenizer, *, max_length: int, think_weight: float, overlong: str = "truncate"):
        self.tok = tokenizer
        self.max_length = max_length
        self.think_weight = think_weight
        self.overlong = overlong
        self.eos = tokenizer.eos_token or ""

    # ---- spans: (start, end, weight) in characters of the rendered text ------------------------
    def _chat(self, record: dict[str, Any]) -> tuple[str, list[tuple[int, int, float]]]:
        messages = record["messages"]  # shape checked by the spec's validator
        render = self.tok.apply_chat_template
        text = render(messages, tokenize=False)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = render(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
            upto = render(messages[: i + 1], tokenize=False)
            if not (text.startswith(upto) and upto.startswith(before)):
                # A template that rewrites history (e.g. strips old <think> blocks): only the
                # final turn is reliable; earlier assistant turns become context.
                if i == len(messages) - 1:
                    before = render(messages[:i], tokenize=False, add_generation_prompt=True)
                    spans.append((len(before), len(text), 1.0))
                continue
            spans.append((len(before), len(upto), 1.0))
        if not spans:
            raise FormatError("a chat example needs at least one assistant message to learn from")
        return text, spans

    def _completion(self, record: dict[str, Any]) -> tuple[str, list[tuple[int, int, float]]]:
        if "text" in record:
            text = record["text"] + self.eos
            return text, [(0, len(text), 1.0)]
        prompt = record["prompt"]
        text = prompt + record["completion"] + self.eos
        return text, [(len(prompt), len(text), 1.0)]

    def _metacog(self, record: dict[str, Any]) -> tuple[str, list[tuple[int, int, float]]]:
        # The validator saw exactly one <think>..</think> then one <answer>..</answer>.
        body = record["text"]
        t = re.search(r"<think>.*?</think>", body, re.S)
        a = re.search(r"<answer>.*?</answer>", body, re.S)
        assert t is not None and a is not None
        text = body + self.eos
        return text, [
            (t.start(), t.end(), self.think_weight),
            (a.start(), len(text), 1.0),  # the answer and the eos that ends it
        ]

    # ---- one record -> Example -----------------------------------------------------------------
    def format(self, record: dict[str, Any], spec: str | None, stats: FormatStats) -> Example | None:
        """The example, or None when the record is bad or refused (counted in stats)."""
        spec = spec or detect_spec(record)
        try:
            if spec not in SPECS:
                raise FormatError(
                    f"unknown spec {spec!r}; the trainer knows {', '.join(SPECS)}"
                    if spec
                    else "no known spec fits this record"
                )
            if err := SPECS[spec](record):
                raise FormatError(err)
            if spec in CHAT_SPECS:
                text, spans = self._chat(record)
            elif spec == "completion_v1":
                text, spans = self._completion(record)
            else:
                text, spans = self._metacog(record)
        except FormatError as exc:
            stats.bad += 1
            if len(stats.errors) < 20:
                stats.errors.append(str(exc))
            return None
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        weights = [0.0] * len(ids)
        for j, (start, _end) in enumerate(offsets):
            for s, e, w in spans:
                if s <= start < e:
                    weights[j] = w
                    break
        if len(ids) > self.max_length:
            if self.overlong == "refuse":
                stats.refused += 1
                return None
            ids, weights = ids[: self.max_length], weights[: self.max_length]
            stats.truncated += 1
        # Targets are shifted by one, so token 0's weight never counts: at least one other is needed.
        if not any(w > 0 for w in weights[1:]):
            stats.refused += 1
            return None
        stats.examples += 1
        return Example(ids, weights)


@dataclass
class QuestData:
    """A quest file formatted once per battle: the training part, the held-out part, the counts."""

    train: list[Example]
    val: list[Example]
    stats: FormatStats

    def epoch_order(self, seed: int, quest_id: int, epoch: int) -> list[int]:
        """The order of training examples in an epoch: fixed by (seed, quest, epoch) so a resumed
        battle sees the same order and its recorded offset means the same examples."""
        order = list(range(len(self.train)))
        random.Random(f"{seed}:{quest_id}:{epoch}").shuffle(order)
        return order


def read_quest(
    path: Path, spec: str | None, formatter: Formatter, *, seed: int, quest_id: int, val_fraction: float
) -> QuestData:
    """Format every line of a quest file, then hold out a fixed slice for validation."""
    stats = FormatStats()
    examples: list[Example] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                stats.bad += 1
                if len(stats.errors) < 20:
                    stats.errors.append(f"line {lineno}: not JSON")
                continue
            if not isinstance(record, dict):
                stats.bad += 1
                continue
            ex = formatter.format(record, spec, stats)
            if ex is not None:
                examples.append(ex)
    n = len(examples)
    n_val = min(max(1 if val_fraction > 0 and n > 1 else 0, round(n * val_fraction)), max(n - 1, 0))
    picks = list(range(n))
    random.Random(f"{seed}:{quest_id}:val").shuffle(picks)
    held = set(picks[:n_val])
    return QuestData(
        train=[e for i, e in enumerate(examples) if i not in held],
        val=[e for i, e in enumerate(examples) if i in held],
        stats=stats,
    )
