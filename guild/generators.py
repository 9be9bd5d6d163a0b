"""The generator registry: a skill's YAML names its generator, this module finds it by name.

A generator makes problems for one level from a seed, deterministically (same arguments, same
bytes), and scores responses exactly. Add one with `@register("name")` on a zero-argument factory.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

# The quarantine's normal form is intake's (one definition, so the two can never drift); guild
# modules import it from here under its guild name.
from arena.intake.quarantine import quarantine_key as norm_prompt

# Modules that register the built-in generators when imported; loaded lazily so that importing the
# registry stays cheap (SY loads a word list).
BUILTIN_MODULES = {"bin": "guild.bin", "sy": "guild.sy"}

_REGISTRY: dict[str, Callable[[], Generator]] = {}
_INSTANCES: dict[str, Generator] = {}


class Generator(Protocol):
    id: str
    version: int
    max_level: int

    def make(self, rng: random.Random, level: int) -> dict[str, Any]:
        """One problem: {"prompt", "expected", "key"} (key identifies the problem across formats)."""

    def score(self, prompt: str, expected: str, response: str) -> bool:
        """Exact, format-robust: does the response carry the expected answer?"""

    def level_info(self, level: int) -> dict[str, Any]:
        """What this level asks (for GET /levels and the docs)."""

    def provenance(self) -> dict[str, Any]:
        """Where the generator's data comes from, with licences."""


def register(name: str) -> Callable[[Callable[[], Generator]], Callable[[], Generator]]:
    def deco(factory: Callable[[], Generator]) -> Callable[[], Generator]:
        _REGISTRY[name] = factory
        return factory

    return deco


def get_generator(name: str) -> Generator:
    if name not in _INSTANCES:
        if name not in _REGISTRY and name in BUILTIN_MODULES:
            importlib.import_module(BUILTIN_MODULES[name])
        if name not in _REGISTRY:
            known = ", ".join(sorted({*_REGISTRY, *BUILTIN_MODULES}))
            raise KeyError(f"no generator registered as {name!r}; known: {known}")
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


def generate(
    gen: Generator,
    level: int,
    count: int,
    seed: int,
    exclude: Iterable[str] = (),
    unique: bool = False,
) -> list[dict[str, Any]]:
    """`count` problems for `level`, deterministic in (generator, version, level, seed).

    `exclude` holds problem keys and normalised prompts that must not appear (eval items, so that
    intake's quarantine never refuses a guild quest); `unique` forbids repeated keys (eval sets).
    """
    if not 1 <= level <= gen.max_level:
        raise ValueError(f"level {level} is outside 1..{gen.max_level} for generator {gen.id!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    banned = set(exclude)
    # String seeds hash through SHA-512 in `random`, so this is stable across runs and platforms.
    rng = random.Random(f"{gen.id}:v{gen.version}:L{level}:s{seed}")
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    budget = 200 * count + 2000
    while len(items) < count:
        budget -= 1
        if budget < 0:
            raise ValueError(
                f"{gen.id} level {level}: could only make {len(items)} of {count} problems outside the"
                f" {len(banned)} excluded ones; lower the count (the level's problem space is small)"
            )
        item = gen.make(rng, level)
        if item["key"] in banned or norm_prompt(item["prompt"]) in banned:
            continue
        if unique and item["key"] in seen:
            continue
        seen.add(item["key"])
        items.append({"skill": gen.id, "level": level, **item})
    return items
