"""The checkpoint ledger: one row per checkpoint with its stats at save time, and the aliases.

Owns the `checkpoints`, `aliases` and `alias_history` tables; nothing outside `vault/` writes them.
Each checkpoint folder's `.ledger.json` sidecar holds the same fields as its row, so `rebuild` can
recreate the ledger from the folders. `land` is the one call a trainer makes when a checkpoint folder
has been renamed into place: ledger row, catalog asset (with file hashes) and local location, and for
an adapter checkpoint its base model asset and the dependency on it (`vault.deps`), in one transaction.

Aliases name an asset (`champion`, `release-1`); every move is kept in `alias_history` (from, to,
when, by whom, why) and announced as a `vault.alias` event. `latest` is computed (the newest live
checkpoint), never stored; names that would shadow a step, an id form or `latest` are refused.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from vault import ids
from vault.errors import AliasError, AssetNotFound, LedgerError
from vault.identity import Identity, identify

if TYPE_CHECKING:
    import sqlite3

    from vault.catalog import Asset, Catalog
    from vault.events import EventLog
    from vault.store import Store

log = logging.getLogger("realm.vault.ledger")

SIDECAR = ".ledger.json"
LEDGER_VERSION = 1
# The sidecar fields (arena.checkpoints writes them), each its own column; any other key lands in `extra`.
LEDGER_FIELDS = (
    "step",
    "timestamp",
    "train_loss",
    "val_loss",
    "learning_rate",
    "epoch",
    "perplexity",
    "training_file",
    "quest_id",
    "skill_name",
    "skill_level",
    "total_examples_trained",
    "size_bytes",
    "has_optimizer",
    "ledger_version",
)
# Metrics `best` ranks by, each with its declared direction (None: the caller must say).
METRICS: dict[str, str | None] = {
    "train_loss": "min",
    "val_loss": "min",
    "perplexity": "min",
    "step": "max",
    "epoch": "max",
    "total_examples_trained": "max",
    "skill_level": "max",
    "size_bytes": "min",
    "learning_rate": None,
}


def _folder_ok(p: Path) -> bool:
    return p.is_dir() and bool(ids.CANONICAL_RE.match(p.name)) and (p / SIDECAR).is_file()


def read_sidecar(folder: Path) -> dict[str, Any]:
    return orjson.loads((Path(folder) / SIDECAR).read_bytes())


class Ledger:
    def __init__(self, store: Store, events: EventLog | None = None):
        self.store = store
        self.events = events

    # ---- writing -------------------------------------------------------------------------------
    def record(self, folder: Path, sidecar: dict[str, Any]) -> None:
        """Write (or rewrite) the row of one checkpoint folder from its sidecar fields."""
        with self.store.tx() as conn:
            self._record(conn, folder, sidecar)

    @staticmethod
    def _record(conn: sqlite3.Connection, folder: Path, s: dict[str, Any]) -> None:
        folder = Path(folder)
        extra = {k: v for k, v in s.items() if k not in LEDGER_FIELDS and k != "name"}
        conn.execute(
            "INSERT INTO checkpoints (step, name, path, created_at, train_loss, val_loss, learning_rate,"
            " epoch, perplexity, training_file, quest_id, skill_name, skill_level, total_examples_trained,"
            " size_bytes, has_optimizer, ledger_version, deleted, extra)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?)"
            " ON CONFLICT(name) DO UPDATE SET step = excluded.step, path = excluded.path,"
            " created_at = excluded.created_at, train_loss = excluded.train_loss, val_loss = excluded.val_loss,"
            " learning_rate = excluded.learning_rate, epoch = excluded.epoch, perplexity = excluded.perplexity,"
            " training_file = excluded.training_file, quest_id = excluded.quest_id,"
            " skill_name = excluded.skill_name, skill_level = excluded.skill_level,"
            " total_examples_trained = excluded.total_examples_trained, size_bytes = excluded.size_bytes,"
            " has_optimizer = excluded.has_optimizer, ledger_version = excluded.ledger_version,"
            " deleted = 0, extra = excluded.extra",
            (
                int(s["step"]),
                s.get("name") or folder.name,
                str(folder),
                s.get("timestamp"),
                s.get("train_loss"),
                s.get("val_loss"),
                s.get("learning_rate"),
                s.get("epoch"),
                s.get("perplexity"),
                s.get("training_file"),
                s.get("quest_id"),
                s.get("skill_name"),
                s.get("skill_level"),
                s.get("total_examples_trained"),
                s.get("size_bytes"),
                int(bool(s.get("has_optimizer", True))),
                int(s.get("ledger_version") or LEDGER_VERSION),
                orjson.dumps(extra).decode(),
            ),
        )

    def land(
        self, folder: Path, sidecar: dict[str, Any], catalog: Catalog, identity: Identity | None = None
    ) -> Asset:
        """Register a checkpoint folder that has just been renamed into place: the ledger row, the
        catalog asset with every file's sha256, and its verified local location, in one transaction.
        An adapter checkpoint (its sidecar's `hero` names a base model) also gets, in the same
        transaction, its base registered as an asset and the dependency on it (`vault.deps`).

        `identity` may be passed when the writer hashed the files while writing them; else the folder
        is hashed here (the files are still in the page cache, so this costs a read of memory)."""
        from vault import deps
        from vault.catalog import LOCAL, _rel, classify

        folder = Path(folder)
        ident = identity or identify(folder)
        c = classify(folder, catalog.home_root, "checkpoint")
        base = deps.prepare(catalog, folder, sidecar)  # before the transaction: a new base is hashed once
        with self.store.tx() as conn:
            self._record(conn, folder, sidecar)
            catalog._write(conn, c, ident, LOCAL, _rel(folder, catalog.home_root))
            deps.write(conn, catalog, c.asset_id, base)
        return catalog.get(c.asset_id)  # type: ignore[return-value]

    def mark_deleted(self, name: str, conn: sqlite3.Connection | None = None) -> None:
        if conn is None:
            with self.store.tx() as c:
                self.mark_deleted(name, c)
            return
        conn.execute("UPDATE checkpoints SET deleted = 1 WHERE name = ?", (name,))

    # ---- reading -------------------------------------------------------------------------------
    def _rows(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        rows = self.store.query(sql, params)
        if not rows:
            return rows
        by_asset: dict[str, list[str]] = {}
        for a in self.store.query("SELECT name, asset_id FROM aliases ORDER BY name"):
            by_asset.setdefault(a["asset_id"], []).append(a["name"])
        latest = self.store.scalar("SELECT max(step) FROM checkpoints WHERE deleted = 0")
        for r in rows:
            r["asset_id"] = ids.checkpoint_id(r["step"])
            r["extra"] = orjson.loads(r["extra"] or "{}")
            r["deleted"] = bool(r["deleted"])
            r["has_optimizer"] = bool(r["has_optimizer"])
            names = list(by_asset.get(r["asset_id"], []))
            if not r["deleted"] and r["step"] == latest:
                names.insert(0, ids.LATEST)
            r["aliases"] = names
        return rows

    def get(self, ref: int | str) -> dict[str, Any] | None:
        """A row by step (the live one first), canonical name, id form, alias or `latest`."""
        if isinstance(ref, str) and ids.CANONICAL_RE.match(ref.strip().lower()):
            rows = self._rows("SELECT * FROM checkpoints WHERE name = ?", (ref.strip(),))
            if rows:
                return rows[0]
        if isinstance(ref, str) and ref.strip().lower() == ids.LATEST:
            return self.latest()
        step = ids.parse_step(ref)
        if step is None and isinstance(ref, str):
            target = self.alias(ref.strip().lower())
            if target and ids.kind_of(target) == "checkpoint":
                step = int(target.split("_", 1)[1])
        if step is None:
            return None
        rows = self._rows(
            "SELECT * FROM checkpoints WHERE step = ? ORDER BY deleted, id DESC LIMIT 1", (step,)
        )
        return rows[0] if rows else None

    def latest(self) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM checkpoints WHERE deleted = 0 ORDER BY step DESC, id DESC LIMIT 1")
        return rows[0] if rows else None

    def best(self, metric: str, direction: str | None = None) -> dict[str, Any] | None:
        """The live checkpoint with the best value of `metric` (rows without a value are skipped)."""
        if metric not in METRICS:
            raise LedgerError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        direction = direction or METRICS[metric]
        if direction not in ("min", "max"):
            raise LedgerError(f"metric {metric!r} needs a direction: 'min' or 'max' (got {direction!r})")
        order = "ASC" if direction == "min" else "DESC"
        rows = self._rows(
            f"SELECT * FROM checkpoints WHERE deleted = 0 AND {metric} IS NOT NULL"
            f" ORDER BY {metric} {order}, step DESC LIMIT 1"
        )
        return rows[0] if rows else None

    def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        skill: str | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
        include_deleted: bool = False,
    ) -> list[dict[str, Any]]:
        """Rows newest step first, filtered."""
        sql, params = "SELECT * FROM checkpoints WHERE 1", []
        if not include_deleted:
            sql += " AND deleted = 0"
        if skill:
            sql += " AND skill_name = ?"
            params.append(skill)
        if min_step is not None:
            sql += " AND step >= ?"
            params.append(int(min_step))
        if max_step is not None:
            sql += " AND step <= ?"
            params.append(int(max_step))
        sql += " ORDER BY step DESC, id DESC LIMIT ? OFFSET ?"
        params += [int(limit), int(offset)]
        return self._rows(sql, params)

    def summary(self) -> dict[str, Any]:
        counts = (
            self.store.one(
                "SELECT count(*) FILTER (WHERE deleted = 0) AS live, count(*) FILTER (WHERE deleted = 1) AS deleted,"
                " min(step) FILTER (WHERE deleted = 0) AS first_step, max(step) FILTER (WHERE deleted = 0) AS last_step,"
                " coalesce(sum(size_bytes) FILTER (WHERE deleted = 0), 0) AS live_bytes FROM checkpoints"
            )
            or {}
        )
        skills = [
            r["skill_name"]
            for r in self.store.query(
                "SELECT DISTINCT skill_name FROM checkpoints WHERE skill_name IS NOT NULL ORDER BY skill_name"
            )
        ]

        def brief(row: dict[str, Any] | None, metric: str | None = None) -> dict[str, Any] | None:
            if row is None:
                return None
            out = {"step": row["step"], "name": row["name"], "asset_id": row["asset_id"]}
            if metric:
                out[metric] = row[metric]
            return out

        return {
            **counts,
            "latest": brief(self.latest()),
            "best": {m: brief(self.best(m), m) for m in ("train_loss", "val_loss")},
            "skills": skills,
            "aliases": {name: a["asset_id"] for name, a in self.aliases().items()},
        }

    # ---- repair --------------------------------------------------------------------------------
    def rebuild(self, models_dir: Path) -> int:
        """Rewrite every row from the checkpoint folders' sidecars; rows whose folder is gone are
        marked deleted (their history stays). Returns the number of folders recorded."""
        folders = (
            [p for p in sorted(Path(models_dir).iterdir()) if _folder_ok(p)]
            if Path(models_dir).is_dir()
            else []
        )
        names = {p.name for p in folders}
        with self.store.tx() as conn:
            for p in folders:
                self._record(conn, p, read_sidecar(p))
            for r in conn.execute("SELECT name FROM checkpoints WHERE deleted = 0").fetchall():
                if r["name"] not in names:
                    conn.execute("UPDATE checkpoints SET deleted = 1 WHERE name = ?", (r["name"],))
        log.info("ledger rebuilt from %d sidecars in %s", len(folders), models_dir)
        return len(folders)

    def reconcile(self, models_dir: Path, catalog: Catalog | None = None) -> dict[str, list[str]]:
        """Make the ledger (and the catalog's local copies) agree with the complete checkpoint folders.

        A folder without a row gets one (and is catalogued); a row marked deleted whose folder is back
        is restored; a live row whose folder is gone is marked deleted and its local copy missing."""
        from vault.catalog import LOCAL

        report: dict[str, list[str]] = {"added": [], "marked_deleted": [], "restored": [], "catalogued": []}
        models_dir = Path(models_dir)
        on_disk = {p.name: p for p in models_dir.iterdir() if _folder_ok(p)} if models_dir.is_dir() else {}
        rows = {r["name"]: r for r in self.store.query("SELECT name, step, deleted FROM checkpoints")}
        with self.store.tx() as conn:
            for name, p in on_disk.items():
                if name not in rows:
                    self._record(conn, p, read_sidecar(p))
                    report["added"].append(name)
                elif rows[name]["deleted"]:
                    conn.execute("UPDATE checkpoints SET deleted = 0 WHERE name = ?", (name,))
                    report["restored"].append(name)
            for name, row in rows.items():
                if name not in on_disk and not row["deleted"]:
                    conn.execute("UPDATE checkpoints SET deleted = 1 WHERE name = ?", (name,))
                    conn.execute(
                        "UPDATE locations SET status = 'missing' WHERE asset_id = ? AND zone = ?"
                        " AND (path = ? OR path LIKE ?)",
                        (ids.checkpoint_id(row["step"]), LOCAL, name, f"%/{name}"),
                    )
                    report["marked_deleted"].append(name)
        if catalog is not None:
            # Folders the catalog does not hold locally (a home from before the catalog, a crash
            # between rename and landing) are hashed and registered now.
            held = {
                r["path"]
                for r in self.store.query(
                    "SELECT path FROM locations WHERE zone = ? AND status = 'verified' AND asset_id LIKE"
                    " 'checkpoint%'",
                    (LOCAL,),
                )
            }
            from vault import deps
            from vault.catalog import _rel

            for name, p in sorted(on_disk.items()):
                if _rel(p, catalog.home_root) not in held:
                    asset = catalog.register(p, kind="checkpoint")
                    deps.link(catalog, asset.id, p, read_sidecar(p))  # an adapter's base, as landing does
                    report["catalogued"].append(name)
        if any(report.values()):
            log.info("ledger reconcile: %s", {k: v for k, v in report.items() if v})
        return report

    # ---- aliases -------------------------------------------------------------------------------
    def alias(self, name: str) -> str | None:
        """The asset id an alias names; `latest` is computed from the live rows."""
        if name == ids.LATEST:
            row = self.latest()
            return ids.checkpoint_id(row["step"]) if row else None
        return self.store.scalar("SELECT asset_id FROM aliases WHERE name = ?", (name,))

    def aliases(self) -> dict[str, dict[str, Any]]:
        """Every stored alias, plus `latest` (computed: True) when there is a live checkpoint."""
        out: dict[str, dict[str, Any]] = {}
        latest = self.latest()
        if latest:
            out[ids.LATEST] = {
                "asset_id": latest["asset_id"],
                "step": latest["step"],
                "computed": True,
            }
        for r in self.store.query("SELECT * FROM aliases ORDER BY name"):
            kind = ids.kind_of(r["asset_id"])
            step = int(r["asset_id"].split("_", 1)[1]) if kind == "checkpoint" else None
            out[r["name"]] = {**r, "step": step, "computed": False}
        return out

    def set_alias(self, name: str, ref: str | int, *, by: str, reason: str) -> dict[str, Any]:
        """Point `name` at the asset `ref` names; the move is kept in alias_history."""
        from vault.catalog import resolve_id

        name = str(name).strip().lower()
        problem = ids.alias_problem(name)
        if problem:
            raise AliasError(f"cannot set alias {name!r}: {problem}")
        target = resolve_id(self.store, ref)
        if not self._exists(target):
            raise AssetNotFound(
                str(ref), f"{ref!r} names {target}, which is neither catalogued nor in the ledger"
            )
        now = time.time()
        with self.store.tx() as conn:
            old = conn.execute("SELECT asset_id FROM aliases WHERE name = ?", (name,)).fetchone()
            before = old["asset_id"] if old else None
            if before == target:
                return {"name": name, "asset_id": target, "from": before, "moved": False}
            conn.execute(
                "INSERT INTO aliases (name, asset_id, set_at, set_by, reason) VALUES (?,?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET asset_id = excluded.asset_id, set_at = excluded.set_at,"
                " set_by = excluded.set_by, reason = excluded.reason",
                (name, target, now, by, reason or ""),
            )
            conn.execute(
                "INSERT INTO alias_history (name, from_asset, to_asset, at, by, reason) VALUES (?,?,?,?,?,?)",
                (name, before, target, now, by, reason or ""),
            )
        self._announce(name, before, target, by, reason)
        return {"name": name, "asset_id": target, "from": before, "moved": True}

    def remove_alias(self, name: str, *, by: str, reason: str) -> None:
        name = str(name).strip().lower()
        if name == ids.LATEST:
            raise AliasError("'latest' is computed (the newest live checkpoint) and cannot be removed")
        with self.store.tx() as conn:
            old = conn.execute("SELECT asset_id FROM aliases WHERE name = ?", (name,)).fetchone()
            if old is None:
                raise AliasError(f"no alias {name!r}")
            conn.execute("DELETE FROM aliases WHERE name = ?", (name,))
            conn.execute(
                "INSERT INTO alias_history (name, from_asset, to_asset, at, by, reason) VALUES (?,?,NULL,?,?,?)",
                (name, old["asset_id"], time.time(), by, reason or ""),
            )
        self._announce(name, old["asset_id"], None, by, reason)

    def alias_history(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Alias moves, newest first (`to_asset` None: the alias was removed)."""
        if name:
            return self.store.query(
                "SELECT * FROM alias_history WHERE name = ? ORDER BY id DESC LIMIT ?",
                (name.strip().lower(), int(limit)),
            )
        return self.store.query("SELECT * FROM alias_history ORDER BY id DESC LIMIT ?", (int(limit),))

    def aliased_ids(self) -> set[str]:
        return {r["asset_id"] for r in self.store.query("SELECT DISTINCT asset_id FROM aliases")}

    def _exists(self, asset_id: str) -> bool:
        if self.store.one("SELECT 1 FROM assets WHERE id = ?", (asset_id,)):
            return True
        if ids.kind_of(asset_id) == "checkpoint":
            step = int(asset_id.split("_", 1)[1])
            return (
                self.store.one("SELECT 1 FROM checkpoints WHERE step = ? AND deleted = 0", (step,))
                is not None
            )
        return False

    def _announce(self, name: str, before: str | None, after: str | None, by: str, reason: str) -> None:
        log.info("alias %s: %s -> %s by %s (%s)", name, before, after, by, reason)
        if self.events is not None:
            self.events.emit("vault.alias", name=name, **{"from": before, "to": after}, by=by, reason=reason)


def created_ts(row: dict[str, Any]) -> float | None:
    """A ledger row's save time as epoch seconds (`created_at` is the sidecar's local timestamp)."""
    try:
        return datetime.strptime(row["created_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (TypeError, ValueError, KeyError):
        return None
