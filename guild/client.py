"""One client for every skill, local or remote.

`open_skill(spec)` returns a `SkillClient`: a local one calls the registered generator in-process, a
remote one speaks the skill-server contract over HTTP (GET /health, /info, /levels, /eval?level=N;
POST /generate {level, count, seed}; plus the optional POST /score). The guild never asks which.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import requests

from guild.generators import Generator, generate, get_generator, norm_prompt
from guild.skills import SkillError, SkillSpec

log = logging.getLogger(__name__)

# Eval sets come from this seed; training quests never use it (see `training_seed`), and their
# generation also excludes every eval item by key and prompt.
EVAL_SEED = 1_000_003


def training_seed(seed: int) -> int:
    return seed + 1 if seed == EVAL_SEED else seed


class SkillClient(Protocol):
    spec: SkillSpec

    def info(self) -> dict[str, Any]: ...
    def levels(self) -> list[dict[str, Any]]: ...
    def generate(self, level: int, count: int, seed: int, exclude: set[str] | None = None) -> list[dict]: ...
    def eval_items(self, level: int, n: int) -> list[dict[str, Any]]: ...
    def score(self, prompt: str, expected: str, response: str) -> bool: ...


def _info(spec: SkillSpec, gen: Generator) -> dict[str, Any]:
    return {**spec.to_dict(), "provenance": gen.provenance(), "eval_seed": EVAL_SEED}


class LocalSkill:
    def __init__(self, spec: SkillSpec, gen: Generator | None = None):
        self.spec = spec
        self.gen = gen or get_generator(spec.generator)
        if self.gen.version != spec.generator_version:
            raise SkillError(
                f"{spec.path}: generator.version is {spec.generator_version} but generator"
                f" {self.gen.id!r} is version {self.gen.version}; update the YAML"
            )

    def info(self) -> dict[str, Any]:
        return _info(self.spec, self.gen)

    def levels(self) -> list[dict[str, Any]]:
        return [self.gen.level_info(lv) for lv in range(1, self.spec.max_level + 1)]

    def _tag(self, items: list[dict]) -> list[dict]:
        return [{**it, "skill": self.spec.id} for it in items]

    def generate(self, level: int, count: int, seed: int, exclude: set[str] | None = None) -> list[dict]:
        return self._tag(generate(self.gen, level, count, training_seed(seed), exclude or ()))

    def eval_items(self, level: int, n: int) -> list[dict[str, Any]]:
        return self._tag(generate(self.gen, level, n, EVAL_SEED, unique=True))

    def score(self, prompt: str, expected: str, response: str) -> bool:
        return self.gen.score(prompt, expected, response)


class RemoteSkill:
    """A skill served elsewhere. Scoring stays local when the generator is registered here too
    (exact and fast); otherwise it asks the server's POST /score."""

    def __init__(self, spec: SkillSpec, timeout: float = 30.0):
        self.spec = spec
        self.url = spec.api_url or ""
        self.timeout = timeout
        self.http = requests.Session()
        try:
            self.local: Generator | None = get_generator(spec.generator)
        except KeyError:
            self.local = None

    def _get(self, path: str, **params: Any) -> Any:
        r = self.http.get(self.url + path, params=params, timeout=self.timeout)
        return self._json(r, path)

    def _post(self, path: str, body: dict) -> Any:
        r = self.http.post(self.url + path, json=body, timeout=self.timeout)
        return self._json(r, path)

    def _json(self, r: requests.Response, path: str) -> Any:
        if r.status_code != 200:
            raise SkillError(f"skill server {self.url}{path} answered {r.status_code}: {r.text[:200]}")
        return r.json()

    def health(self) -> dict[str, Any]:
        return self._get("/health")

    def info(self) -> dict[str, Any]:
        return self._get("/info")

    def levels(self) -> list[dict[str, Any]]:
        return self._get("/levels")["levels"]

    def generate(self, level: int, count: int, seed: int, exclude: set[str] | None = None) -> list[dict]:
        body = {"level": level, "count": count, "seed": training_seed(seed)}
        if exclude:
            body["exclude"] = sorted(exclude)
        items = self._post("/generate", body)["items"]
        banned = exclude or set()
        # A server that ignores "exclude" must still never hand us an eval prompt.
        kept = [it for it in items if norm_prompt(it["prompt"]) not in banned and it.get("key") not in banned]
        if len(kept) < len(items):
            log.warning("dropped %d excluded items from %s", len(items) - len(kept), self.url)
        return [{**it, "skill": self.spec.id, "level": level} for it in kept]

    def eval_items(self, level: int, n: int) -> list[dict[str, Any]]:
        items = self._get("/eval", level=level, n=n)["items"]
        return [{**it, "skill": self.spec.id, "level": level} for it in items]

    def score(self, prompt: str, expected: str, response: str) -> bool:
        if self.local is not None:
            return self.local.score(prompt, expected, response)
        body = {"prompt": prompt, "expected": expected, "response": response}
        return bool(self._post("/score", body)["correct"])


def open_skill(spec: SkillSpec) -> SkillClient:
    return RemoteSkill(spec) if spec.remote else LocalSkill(spec)
