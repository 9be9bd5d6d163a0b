"""The vault's tables: the event log, small realm state, and the checkpoint ledger."""

from sqlite_utils.migrations import Migrations

migrations = Migrations("vault")


@migrations()
def m001_events_and_state(db):
    db.execute(
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX events_kind ON events(kind, id)")
    db.execute(
        """CREATE TABLE state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )


@migrations()
def m002_checkpoint_ledger(db):
    # One row per complete checkpoint folder; the folder's .ledger.json sidecar holds the same
    # fields, so the ledger can be rebuilt from the folders.
    db.execute(
        """CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            step INTEGER NOT NULL,
            name TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            created_at TEXT NOT NULL,
            train_loss REAL,
            val_loss REAL,
            learning_rate REAL,
            epoch REAL,
            perplexity REAL,
            training_file TEXT,
            quest_id INTEGER,
            skill_name TEXT,
            skill_level INTEGER,
            total_examples_trained INTEGER,
            size_bytes INTEGER,
            has_optimizer INTEGER NOT NULL DEFAULT 1,
            ledger_version INTEGER NOT NULL DEFAULT 1,
            deleted INTEGER NOT NULL DEFAULT 0,
            extra TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX checkpoints_step ON checkpoints(step)")
