"""The arena's tables: quests (intake, queue and battles) and battle-control commands."""

from sqlite_utils.migrations import Migrations

migrations = Migrations("arena")


@migrations()
def m001_quests(db):
    # status: queued | processing | completed | failed | skipped | cancelled | retried
    # seq orders quests FIFO inside a priority; a quest put back after a restart gets a low seq.
    db.execute(
        """CREATE TABLE quests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            path TEXT,
            status TEXT NOT NULL,
            priority TEXT NOT NULL DEFAULT 'normal',
            seq REAL NOT NULL DEFAULT 0,
            spec TEXT,
            sha256 TEXT,
            size_bytes INTEGER,
            line_count INTEGER,
            example_count INTEGER,
            duplicates_dropped INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL DEFAULT 'inbox',
            skill TEXT,
            level INTEGER,
            reason TEXT,
            error_path TEXT,
            lineage TEXT NOT NULL DEFAULT '{}',
            progress_offset INTEGER NOT NULL DEFAULT 0,
            progress_epoch INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            queued_at TEXT,
            started_at TEXT,
            finished_at TEXT
        )"""
    )
    db.execute("CREATE INDEX quests_status ON quests(status, priority, seq)")
    db.execute("CREATE INDEX quests_sha ON quests(sha256)")


@migrations()
def m002_commands(db):
    # Battle control (pause/resume/stop/skip) from the CLI and the APIs, consumed by the trainer.
    db.execute(
        """CREATE TABLE commands (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            action TEXT NOT NULL,
            args TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'pending',
            done_at REAL
        )"""
    )
