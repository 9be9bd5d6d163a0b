"""Idle-quest sizing: how many of the hero's tokens one example of a (skill, level) takes.

The planner caps an idle quest by compute (guild.idle_quest_tokens), so it needs tokens per example,
measured the way the trainer will see them: the hero's own tokenizer and chat template over a small
fixed sample of generated problems (never the eval seed), once per (skill, level) per process.

Owns nothing persistent. Must not build a model: only the tokenizer (DIO's byte-level one costs
milliseconds; a base model's is read from its folder). When the tokenizer cannot be had, UTF-8 bytes
plus the chat markers stand in (an upper bound for these texts: no tokenizer here emits more tokens
than bytes), and that is logged once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SAMPLE_SIZE = 16  # problems measured per (skill, level)
SAMPLE_SEED = 7  # a fixed training seed (never guild.client.EVAL_SEED): the same measure every call
CHAT_OVERHEAD = 16  # bytes of ChatML markers around one user + one assistant turn (fallback only)


def hero_tokenizer(config, repo_root: Path):
    """The configured hero's tokenizer, without building the model. `config` is RealmConfig."""
    hero = config.hero
    folder = hero.base_model
    if not folder and hero.preset:
        from arena.presets import resolve_hero

        source = resolve_hero(hero, repo_root)
        folder = str(source.path) if source.path else None
    if folder:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(Path(folder).expanduser())
    from arena.hero import HeroSpec, byte_tokenizer

    path = Path(hero.config)
    return byte_tokenizer(HeroSpec.read(path if path.is_absolute() else Path(repo_root) / path).tokenizer)


class TokenCounter:
    """tokens(prompt, answer) for one chat example, as the trainer formats it."""

    def __init__(self, config, repo_root: Path):
        self.config, self.repo_root = config, Path(repo_root)
        self._tok: Any = None
        self._tried = False

    def _tokenizer(self):
        if not self._tried:
            self._tried = True
            try:
                self._tok = hero_tokenizer(self.config, self.repo_root)
            except Exception as exc:  # sizing must never stop idle quests
                log.warning("sizing idle quests by UTF-8 bytes: the hero's tokenizer failed: %s", exc)
        return self._tok

    def __call__(self, prompt: str, answer: str) -> int:
        tok = self._tokenizer()
        if tok is None:
            return len(prompt.encode()) + len(answer.encode()) + CHAT_OVERHEAD
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        text = tok.apply_chat_template(messages, tokenize=False)
        return len(tok(text, add_special_tokens=False)["input_ids"])


class ExampleSizes:
    """Mean tokens per example of each (skill, level), measured once on a fixed sample."""

    def __init__(self, counter: TokenCounter, client_of):
        self.count, self.client_of = counter, client_of
        self._cache: dict[tuple[str, int], float] = {}

    def __call__(self, skill: str, level: int) -> float:
        key = (skill, level)
        if key not in self._cache:
            sample = self.client_of(skill).generate(level, SAMPLE_SIZE, SAMPLE_SEED)
            sizes = [self.count(p["prompt"], p["expected"]) for p in sample]
            self._cache[key] = sum(sizes) / max(1, len(sizes))
        return self._cache[key]
