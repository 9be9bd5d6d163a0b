"""Eval quarantine's normal form: the one definition of "the same prompt".

Intake refuses an example whose prompt has this key in common with an eval-set item, and the guild
never generates a training problem whose prompt does (`guild.generators`). Both sides call
`quarantine_key`: if they ever normalised differently, quarantine would fail silently.

Whitespace runs collapse to one space and case folds: "What is  101 + 11 in BINARY?" is the same
problem to a model as "what is 101 + 11 in binary?", so it must not slip past the quarantine.
Kept free of imports so the guild can use it without loading intake's service.
"""

from __future__ import annotations


def quarantine_key(text: str) -> str:
    return " ".join(text.split()).casefold()
