"""The vault's tables: the event log, small realm state, the checkpoint ledger and the asset catalog
(with `asset_deps`, which asset needs which)."""

import time
from pathlib import Path

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


SERIES_KINDS = ("step", "val", "battle.end", "checkpoint.saved")


# The rows of `series` that make each chart metric (the rollup triggers, their partial indexes and
# watchtower.metrics all use these, so they cannot disagree); `r` qualifies the columns ("NEW." in a trigger).
def series_rows(metric: str, r: str = "") -> str:
    if metric == "loss":
        return f"{r}kind = 'step' AND {r}loss IS NOT NULL"
    return f"{r}val_loss IS NOT NULL"


@migrations()
def m003_loss_series(db):
    # The Tavern's loss chart reads (step, ts, loss, val_loss) of every step event. Pulling them out
    # of 1M JSON payloads took seconds per chart load; this narrow table, filled by a trigger in the
    # same transaction as each event, holds them as plain columns. Writers do not change: the event
    # log stays the one interface, and the table is rebuilt from it here for existing homes.
    kinds = ", ".join(f"'{k}'" for k in SERIES_KINDS)
    db.execute(
        """CREATE TABLE series (
            event_id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            step INTEGER,
            ts REAL NOT NULL,
            loss REAL,
            val_loss REAL
        )"""
    )
    cols = "kind, payload ->> '$.step', ts, payload ->> '$.loss', payload ->> '$.val_loss'"
    db.execute(f"INSERT INTO series SELECT id, {cols} FROM events WHERE kind IN ({kinds})")
    new_cols = cols.replace("kind", "NEW.kind").replace("payload", "NEW.payload").replace(" ts,", " NEW.ts,")
    db.execute(
        f"""CREATE TRIGGER events_series AFTER INSERT ON events WHEN NEW.kind IN ({kinds})
            BEGIN INSERT INTO series VALUES (NEW.id, {new_cols}); END"""
    )


# Rollup levels of the loss chart: bucket widths 16 x 4^k steps (k = 0..9, up to 4M steps a bucket)
# and 4^k seconds (k = 0..12, up to 194 days). A chart of at most P points reads the finest level
# with at most P/2 buckets, so it reads between P/8 and P/2 rows whatever the history's length.
ROLLUP_LEVELS = {"step": [(k, 16 * 4**k) for k in range(10)], "time": [(k, 4**k) for k in range(13)]}


@migrations()
def m004_loss_rollup(db):
    # Even over the narrow `series` table, bucketing 1M rows at read time took ~2.7 s a chart load.
    # TensorBoard downsamples at write time; so do we: each loss and val_loss lands, by trigger, in
    # one bucket per level (min and max with their step and time), ~23 tiny upserts per event.
    db.execute("CREATE TABLE rollup_levels (axis TEXT NOT NULL, level INTEGER NOT NULL, width REAL NOT NULL)")
    for axis, levels in ROLLUP_LEVELS.items():
        for k, w in levels:
            db.execute("INSERT INTO rollup_levels VALUES (?, ?, ?)", [axis, k, w])
    db.execute(
        """CREATE TABLE rollup (
            metric TEXT NOT NULL, axis TEXT NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL,
            lo REAL NOT NULL, lo_step INTEGER, lo_ts REAL,
            hi REAL NOT NULL, hi_step INTEGER, hi_ts REAL,
            n INTEGER NOT NULL,
            PRIMARY KEY (metric, axis, level, bucket)
        ) WITHOUT ROWID"""
    )
    db.execute(f"CREATE INDEX series_train ON series(step) WHERE {series_rows('loss')}")
    db.execute(f"CREATE INDEX series_val ON series(step) WHERE {series_rows('val_loss')}")

    def upsert(metric: str, row: str, source: str = "rollup_levels l") -> str:
        x = f"CASE l.axis WHEN 'step' THEN {row}.step ELSE {row}.ts END"
        return f"""INSERT INTO rollup SELECT '{metric}', l.axis, l.level, CAST(({x}) / l.width AS INTEGER),
                {row}.{metric}, {row}.step, {row}.ts, {row}.{metric}, {row}.step, {row}.ts, 1
            FROM {source} WHERE ({x}) IS NOT NULL
            ON CONFLICT DO UPDATE SET
                lo_step = CASE WHEN excluded.lo < lo THEN excluded.lo_step ELSE lo_step END,
                lo_ts = CASE WHEN excluded.lo < lo THEN excluded.lo_ts ELSE lo_ts END,
                lo = min(lo, excluded.lo),
                hi_step = CASE WHEN excluded.hi > hi THEN excluded.hi_step ELSE hi_step END,
                hi_ts = CASE WHEN excluded.hi > hi THEN excluded.hi_ts ELSE hi_ts END,
                hi = max(hi, excluded.hi),
                n = n + 1"""

    for metric, name in (("loss", "series_rollup_train"), ("val_loss", "series_rollup_val")):
        when = series_rows(metric, "NEW.")
        db.execute(
            f"CREATE TRIGGER {name} AFTER INSERT ON series WHEN {when} BEGIN {upsert(metric, 'NEW')}; END"
        )
        # Existing history: the same upserts, row by row in step order, from the series table.
        rows = f"(SELECT * FROM series WHERE {series_rows(metric)} ORDER BY event_id) s, rollup_levels l"
        db.execute(upsert(metric, "s", rows))


@migrations()
def m005_catalog(db):
    # The asset catalog (issue #13): every asset's content identity, its files and the zones holding
    # it, plus aliases and their history. Every field anyone filters on is a column, so the database
    # reads as plain tables in sqlite-utils and datasette; `meta` holds only descriptive extras.
    db.execute(
        """CREATE TABLE assets (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('checkpoint','model','data','evalset','config')),
            name TEXT NOT NULL,
            step INTEGER,
            digest TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            file_count INTEGER NOT NULL,
            is_dir INTEGER NOT NULL,
            created_at REAL NOT NULL,
            registered_at REAL NOT NULL,
            base_asset TEXT,
            meta TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX assets_kind_step ON assets(kind, step)")
    db.execute("CREATE INDEX assets_name ON assets(name)")
    db.execute("CREATE INDEX assets_digest ON assets(digest)")
    # mtime_ns is not identity: it lets a re-scan skip re-hashing a file whose size and mtime match.
    db.execute(
        """CREATE TABLE asset_files (
            asset_id TEXT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
            relpath TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            mtime_ns INTEGER,
            PRIMARY KEY (asset_id, relpath)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX asset_files_sha256 ON asset_files(sha256)")
    db.execute(
        """CREATE TABLE zones (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('local','officer','fsspec')),
            url TEXT NOT NULL,
            token_env TEXT,
            added_at REAL NOT NULL,
            priority INTEGER NOT NULL
        )"""
    )
    # The realm home is always the zone `local`; its url is the home folder this database lives in
    # (Catalog corrects it when a home is opened from another path, e.g. a copied home).
    home = next((r[2] for r in db.execute("PRAGMA database_list").fetchall() if r[1] == "main"), "")
    url = str(Path(home).parent) if home else ""
    db.execute(
        "INSERT INTO zones (id, kind, url, token_env, added_at, priority) VALUES ('local','local',?,NULL,?,0)",
        [url, time.time()],
    )
    db.execute(
        """CREATE TABLE locations (
            asset_id TEXT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
            zone TEXT NOT NULL REFERENCES zones(id),
            path TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('verified','unverified','corrupt','missing')),
            verified_at REAL,
            added_at REAL NOT NULL,
            PRIMARY KEY (asset_id, zone)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX locations_zone ON locations(zone, status)")
    db.execute(
        """CREATE TABLE aliases (
            name TEXT PRIMARY KEY,
            asset_id TEXT NOT NULL,
            set_at REAL NOT NULL,
            set_by TEXT NOT NULL,
            reason TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX aliases_asset ON aliases(asset_id)")
    db.execute(
        """CREATE TABLE alias_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            from_asset TEXT,
            to_asset TEXT,
            at REAL NOT NULL,
            by TEXT NOT NULL,
            reason TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX alias_history_name ON alias_history(name, id)")
    db.execute(
        """CREATE TABLE transfers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            asset_id TEXT NOT NULL,
            src_zone TEXT NOT NULL,
            dst_zone TEXT NOT NULL,
            direction TEXT NOT NULL,
            status TEXT NOT NULL,
            bytes_total INTEGER,
            bytes_moved INTEGER NOT NULL DEFAULT 0,
            started_at REAL NOT NULL,
            finished_at REAL,
            error TEXT
        )"""
    )
    db.execute("CREATE INDEX transfers_asset ON transfers(asset_id, id)")
    # The ledger is looked up by name (canonical names, reconcile) and by live step (latest, get).
    db.execute("CREATE INDEX checkpoints_live_step ON checkpoints(deleted, step)")


@migrations()
def m006_asset_deps(db):
    # Issue #17: an adapter checkpoint is useless without the base model it was trained on, so the
    # catalog records "asset needs asset" and removal asks it first. Only the dependant side cascades:
    # a dependant's rows go with it, while a row naming a base removed by force stays, so the
    # adapter still says what it needs (and the link holds again if that base comes back).
    db.execute(
        """CREATE TABLE asset_deps (
            asset_id TEXT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
            needs_asset_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (asset_id, needs_asset_id)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX asset_deps_needs ON asset_deps(needs_asset_id)")
