"""Lineage statistics: which generator, validator and quest source produces what, and why files are refused.

The read side of the lineage that intake writes (`arena/intake/`, which keeps writing it): every quest
row carries a `lineage` JSON with its generator (from the sidecar), the validator that refused it (a
refusal always names one; an accepted file has none) and the validators it passed
(`lineage.validators`), and the row's `source` says where it came from (`inbox`, `upload`, or the
sidecar's `source`, which the guild's idle quests set to `guild`). This module reads the quests table
(SQL on the arena's table is allowed here and only here, outside the arena) and answers, without a
table of its own:

- per generator and per validator: quests and examples accepted and refused, with the top refusal
  reasons and their counts;
- per quest source: the same, for every source (inbox, upload and guild are always listed).

Examples are a quest's `example_count`, or its `line_count` for a file refused before it was counted.
A validator "passed" a quest when the quest was accepted and the validator applies to it: every
`intake.*`, `content.*` and `dedup.*` check applies to every file, a `spec.NAME` check only to files of
that spec. Reasons are grouped by their text with line numbers, counts and quest references folded
(`line 3: bad role` and `line 9: bad role` are one reason). Must not write.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vault.store import Store

SOURCES: tuple[str, ...] = ("inbox", "upload", "guild")
NO_GENERATOR = "(none)"
TOP_REASONS = 5

_LINE_PREFIX = re.compile(r"^line \d+: ")
_MORE_ERRORS = re.compile(r" \(and \d+ more errors?\)$")
_QUEST_REF = re.compile(r"#\d+ \([^)]*\)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_REASON_MAX = 200


def reason_key(reason: str | None) -> str:
    """A refusal reason without the parts that differ between files of the same mistake."""
    text = (reason or "(no reason)").strip()
    text = _MORE_ERRORS.sub("", _LINE_PREFIX.sub("", text))
    text = _NUMBER.sub("N", _QUEST_REF.sub("#N", text))
    return text[:_REASON_MAX]


@dataclass
class Tally:
    """Accepted and refused quests and examples of one group, and why the refused ones were refused."""

    quests: Counter = field(default_factory=Counter)
    examples: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)

    def add(self, accepted: bool, quests: int, examples: int, reason: str | None = None) -> None:
        """Count `quests` quests of one outcome; `reason` is an already folded key (refusals only)."""
        outcome = "accepted" if accepted else "refused"
        self.quests[outcome] += quests
        self.examples[outcome] += examples
        if not accepted:
            self.reasons[reason or "(no reason)"] += quests

    def to_dict(self) -> dict[str, Any]:
        return {
            "quests": {"accepted": self.quests["accepted"], "refused": self.quests["refused"]},
            "examples": {"accepted": self.examples["accepted"], "refused": self.examples["refused"]},
            "top_reasons": [
                {"reason": r, "count": n}
                # Ties in a stable order: the most common first, then alphabetical.
                for r, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
            ],
        }


def _quest_groups(store: Store) -> list[dict[str, Any]]:
    # Grouped in SQL: accepted quests collapse to a few groups, refused ones to one per exact reason,
    # so Python folds each distinct reason text once (bench/lineage.py).
    return store.query(
        "SELECT status, source, reason, spec, validator, passed, generator, generator_version,"
        " count(*) AS quests, sum(examples) AS examples FROM ("
        "  SELECT status, source, reason, spec, coalesce(example_count, line_count, 0) AS examples,"
        "  json_extract(lineage, '$.validator') AS validator,"
        "  json_extract(lineage, '$.validators') AS passed,"
        "  json_extract(lineage, '$.generator.id') AS generator,"
        "  json_extract(lineage, '$.generator.version') AS generator_version"
        "  FROM quests"
        ") GROUP BY status, source, reason, spec, validator, passed, generator, generator_version"
    )


def _applies(validator: str, spec: str | None) -> bool:
    return not validator.startswith("spec.") or validator == f"spec.{spec}"


def _report(quest_groups: list[dict[str, Any]]) -> dict[str, Any]:
    """{"generators": [...], "validators": [...], "sources": [...], "totals": {...}}, busiest first."""
    from arena.intake.lineage import VALIDATORS

    generators: dict[str, Tally] = {}
    versions: dict[str, set[str]] = {}
    validators: dict[str, Tally] = {name: Tally() for name in VALIDATORS}
    sources: dict[str, Tally] = {name: Tally() for name in SOURCES}
    total = Tally()
    recorded: dict[str, Any] = {}
    accepted_by_spec: Counter = Counter()
    examples_by_spec: Counter = Counter()
    folded: dict[str | None, str] = {}
    for r in quest_groups:
        refused_by = r["validator"]
        accepted = refused_by is None
        q, n = int(r["quests"]), int(r["examples"] or 0)
        reason = None
        if not accepted:
            if r["reason"] not in folded:
                folded[r["reason"]] = reason_key(r["reason"])
            reason = folded[r["reason"]]
        gen = str(r["generator"]) if r["generator"] is not None else NO_GENERATOR
        if r["generator_version"] is not None:
            versions.setdefault(gen, set()).add(str(r["generator_version"]))
        for groups, key in ((generators, gen), (sources, str(r["source"]))):
            if key not in groups:
                groups[key] = Tally()
            groups[key].add(accepted, q, n, reason)
        total.add(accepted, q, n, reason)
        if accepted:
            accepted_by_spec[r["spec"]] += q
            examples_by_spec[r["spec"]] += n
            # Validators the lineage names beyond VALIDATORS (`intake.content`), with their versions.
            for name, version in json.loads(r["passed"] or "{}").items():
                if name not in validators:
                    validators[name] = Tally()
                recorded.setdefault(name, version)
        else:
            if refused_by not in validators:
                validators[refused_by] = Tally()
            validators[refused_by].add(False, q, n, reason)
    for name, tally in validators.items():
        for spec, q in accepted_by_spec.items():
            if _applies(name, spec):
                tally.quests["accepted"] += q
                tally.examples["accepted"] += examples_by_spec[spec]

    def busiest(groups: dict[str, Tally], key: str) -> list[dict[str, Any]]:
        rows = [{key: name, **t.to_dict()} for name, t in groups.items()]
        rows.sort(key=lambda d: (-d["quests"]["refused"], -d["quests"]["accepted"], d[key]))
        return rows

    gens = busiest(generators, "generator")
    for g in gens:
        g["versions"] = sorted(versions.get(g["generator"], ()))
    vals = busiest(validators, "validator")
    for v in vals:
        v["version"] = VALIDATORS.get(v["validator"], recorded.get(v["validator"]))
    return {
        "generators": gens,
        "validators": vals,
        "sources": busiest(sources, "source"),
        "totals": total.to_dict(),
    }


def lineage_stats(store: Store) -> dict[str, Any]:
    """The report, plus the earlier summary's keys: refusals per validator among failed quests,
    quests by status per generator, and every validator's version (one pass over the table)."""
    from arena.intake.lineage import VALIDATORS

    groups = _quest_groups(store)
    rejections: Counter = Counter()
    by_generator: dict[str, Counter] = {}
    for r in groups:
        if r["status"] == "failed" and r["validator"] is not None:
            rejections[r["validator"]] += r["quests"]
        gen = str(r["generator"]) if r["generator"] is not None else NO_GENERATOR
        by_generator.setdefault(gen, Counter())[r["status"]] += r["quests"]
    return {
        **_report(groups),
        "rejections_by_validator": dict(rejections.most_common()),
        "by_generator": {g: dict(c) for g, c in by_generator.items()},
        "validator_versions": dict(VALIDATORS),
    }
