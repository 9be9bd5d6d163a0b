"""The vault's typed errors: one family, so the CLI, the API and the Tavern can map them to messages
and status codes without parsing text."""

from __future__ import annotations


class VaultError(Exception):
    """Base of every error the vault raises on purpose; the message is meant for the user."""


class AssetNotFound(VaultError, LookupError):
    """A reference that resolves to no asset; the message lists the valid forms and close matches."""

    def __init__(self, ref: str, message: str, close: list[str] | None = None):
        super().__init__(message)
        self.ref = ref
        self.close = close or []


class AliasError(VaultError, ValueError):
    """An alias name that is reserved or malformed, or an alias that does not exist."""


class LastCopyError(VaultError):
    """Refused: the operation would delete the last verified copy of an asset (needs force)."""


class LedgerError(VaultError, ValueError):
    """A ledger query that cannot be answered as asked (unknown metric, bad direction)."""
