"""The quest queue: the quests table and the queue folders, kept in step.

Every move of a quest file is an atomic rename inside the realm home, done together with the
row update that records it, so the folders and the table agree after any crash: a file is renamed
first and the row written second; `recover()` repairs the one window between them (a row that
says `processing` with its file still in the priority folder, or the reverse).

Files are named `{id:06d}__{original name}` inside queue folders so that FIFO order is visible on
disk and two quests with the same name never collide.

Claim order and preemption are one rule (`rank`, `outranks`), owned here: with `arena.preempt` idle or
priority, a player's quest (any source but `guild`) is claimed before a guild idle quest, then high,
normal, low, then FIFO. The daemon preempts a battle only when the quest that `peek_next` would claim
outranks it, and that quest is the one claimed next, so a preempted quest can never preempt its
preemptor back. A preempted quest goes back by `requeue`, the same move as `recover()` after a crash.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from vault.events import EventLog
from vault.home import PRIORITIES, RealmHome
from vault.store import Store

log = logging.getLogger("realm.queue")

# Every status a quests row can hold. `retried`: a failed or cancelled quest whose file `retry()` put
# back into the inbox; the row stays as its history, and intake gives the file a new quest row.
STATUSES = ("queued", "processing", "completed", "failed", "skipped", "cancelled", "retried")

# arena.preempt (sentinels.config.ArenaConfig): what takes a battle over at the next step.
PREEMPT_MODES = ("idle", "priority", "never")
GUILD_SOURCE = "guild"  # the source of the guild's idle quests (their sidecar says so)
_PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}
_PRIORITY_SQL = "CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END"


def _claim_order(preempt: str) -> str:
    """ORDER BY of claim_next/peek_next: the SQL form of `rank`."""
    players_first = f"CASE source WHEN '{GUILD_SOURCE}' THEN 1 ELSE 0 END, " if preempt != "never" else ""
    return f"{players_first}{_PRIORITY_SQL}, seq, id"


def rank(quest: Quest, preempt: str) -> tuple[int, int]:
    """Claim rank (lower first, FIFO inside one rank): players before idle quests unless preempt is
    never, then priority."""
    idle = int(preempt != "never" and quest.source == GUILD_SOURCE)
    return idle, _PRIORITY_RANK.get(quest.priority, 2)


def outranks(queued: Quest, fighting: Quest, preempt: str) -> bool:
    """Whether `queued` takes the battle from `fighting` at the next step under arena.preempt.

    idle: a player's quest over a guild idle quest; priority: that, or a strictly better rank (a
    higher priority within the same kind); never: nothing does."""
    if preempt == "idle":
        return fighting.source == GUILD_SOURCE and queued.source != GUILD_SOURCE
    if preempt == "priority":
        return rank(queued, preempt) < rank(fighting, preempt)
    return False


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class QueueError(ValueError):
    """A queue operation that cannot be done; the message says why."""


@dataclass
class Quest:
    id: int
    name: str
    path: Path | None
    status: str
    priority: str
    spec: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    line_count: int | None = None
    example_count: int | None = None
    duplicates_dropped: int = 0
    source: str = "inbox"
    skill: str | None = None
    level: int | None = None
    reason: str | None = None
    error_path: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    progress_offset: int = 0
    progress_epoch: int = 0
    created_at: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], root: Path) -> Quest:
        data = dict(row)
        data.pop("seq", None)
        data["lineage"] = orjson.loads(data.get("lineage") or "{}")
        data["path"] = root / data["path"] if data.get("path") else None
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["path"] = str(self.path) if self.path else None
        return d


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _move(src: Path, dest: Path, *, sidecar_first: bool = False) -> None:
    """Rename a quest file and its sidecar (if any) inside the realm home.

    The file goes first, so a missing file fails before its sidecar has moved. Into the inbox the
    sidecar goes first instead: intake must find it the moment the quest file appears.
    """
    side = _sidecar(src)
    if not sidecar_first:
        os.replace(src, dest)
    if side.exists():
        os.replace(side, _sidecar(dest))
    if sidecar_first:
        os.replace(src, dest)


def _insert(conn, cols: dict[str, Any], stamp: str) -> int:
    """Insert a quests row with created_at and one more timestamp column set to now."""
    lineage = cols.get("lineage", {})
    cols = {**cols, "lineage": orjson.dumps(lineage, default=str).decode()}
    cur = conn.execute(
        f"INSERT INTO quests ({', '.join(cols)}, created_at, {stamp}) VALUES ({', '.join('?' * len(cols))}, ?, ?)",
        [*cols.values(), now_iso(), now_iso()],
    )
    return int(cur.lastrowid)


class QuestQueue:
    def __init__(self, home: RealmHome, store: Store, events: EventLog):
        self.home, self.store, self.events = home, store, events

    # ---- reading ---------------------------------------------------------------------------
    def get(self, quest_id: int) -> Quest:
        row = self.store.one("SELECT * FROM quests WHERE id = ?", (int(quest_id),))
        if row is None:
            raise QueueError(f"no quest with id {quest_id}")
        return Quest.from_row(row, self.home.root)

    def counts(self) -> dict[str, int]:
        """How many quests are in each status (every status listed, 0 when none)."""
        rows = self.store.query("SELECT status, count(*) AS n FROM quests GROUP BY status")
        found = {r["status"]: int(r["n"]) for r in rows}
        return {s: found.get(s, 0) for s in STATUSES}

    def list(self, statuses: list[str] | None = None, limit: int = 1000) -> list[Quest]:
        sql = "SELECT * FROM quests"
        params: list[Any] = []
        if statuses:
            sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
            params += statuses
        sql += (
            " ORDER BY CASE status WHEN 'processing' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END,"
            " CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END, seq, id LIMIT ?"
        )
        params.append(limit)
        return [Quest.from_row(r, self.home.root) for r in self.store.query(sql, params)]

    def queued(self) -> list[Quest]:
        """Queued quests in the order the trainer will take them."""
        return self.list(["queued"])

    def known_sha(self, sha256: str) -> Quest | None:
        """A queued, processing or completed quest with this content hash (the dedup check)."""
        row = self.store.one(
            "SELECT * FROM quests WHERE sha256 = ? AND status IN ('queued','processing','completed')"
            " ORDER BY id LIMIT 1",
            (sha256,),
        )
        return Quest.from_row(row, self.home.root) if row else None

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.home.root))

    # ---- writing ---------------------------------------------------------------------------
    def enqueue(self, src: Path, *, name: str, priority: str = "normal", **fields: Any) -> Quest:
        """Move an accepted file into queue/<priority>/ and record it as queued."""
        if priority not in PRIORITIES:
            raise QueueError(f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
        with self.store.tx() as conn:
            qid = _insert(
                conn, {"name": name, "status": "queued", "priority": priority, **fields}, "queued_at"
            )
            dest = self.home.queue_dir(priority) / f"{qid:06d}__{name}"
            _move(src, dest)
            conn.execute("UPDATE quests SET path = ?, seq = ? WHERE id = ?", (self._rel(dest), qid, qid))
        quest = self.get(qid)
        self.events.emit(
            "quest.queued",
            quest_id=qid,
            name=name,
            priority=priority,
            spec=quest.spec,
            examples=quest.example_count,
            source=quest.source,
        )
        return quest

    def reject(self, src: Path, *, name: str, reason: str, error: dict[str, Any], **fields: Any) -> Quest:
        """Keep a refused file in queue/failed/ with FILE.error.json beside it; never delete it."""
        with self.store.tx() as conn:
            qid = _insert(conn, {"name": name, "status": "failed", "reason": reason, **fields}, "finished_at")
            dest, err_path = self._to_failed(src, qid, name, reason, error)
            conn.execute(
                "UPDATE quests SET path = ?, error_path = ? WHERE id = ?",
                (self._rel(dest) if dest else None, self._rel(err_path), qid),
            )
        self.events.emit(
            "quest.rejected", quest_id=qid, name=name, reason=reason, error_path=self._rel(err_path)
        )
        return self.get(qid)

    def _to_failed(
        self, src: Path, qid: int, name: str, reason: str, error: dict
    ) -> tuple[Path | None, Path]:
        failed = self.home.queue_dir("failed")
        dest = failed / f"{qid:06d}__{name}"
        moved: Path | None = None
        if src.is_symlink() or src.exists():
            os.replace(src, dest)  # a symlink moves as a link; its target is never read or touched
            moved = dest
            side = _sidecar(src)
            if side.exists():
                os.replace(side, _sidecar(dest))
        err_path = failed / f"{qid:06d}__{name}.error.json"
        body = {"quest_id": qid, "file": name, "message": reason, **error, "time": now_iso()}
        tmp = err_path.with_name(err_path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2, default=str))
        os.replace(tmp, err_path)
        return moved, err_path

    def peek_next(self, preempt: str = "never") -> Quest | None:
        """The queued quest claim_next would take (a read: nothing moves)."""
        row = self.store.one(
            f"SELECT * FROM quests WHERE status = 'queued' ORDER BY {_claim_order(preempt)} LIMIT 1"
        )
        return Quest.from_row(row, self.home.root) if row else None

    def claim_next(self, preempt: str = "never") -> Quest | None:
        """Take the first queued quest into processing/: by `rank` under arena.preempt (with never:
        high, normal, low), FIFO inside."""
        with self.store.tx() as conn:
            while True:
                row = conn.execute(
                    f"SELECT * FROM quests WHERE status = 'queued' ORDER BY {_claim_order(preempt)} LIMIT 1"
                ).fetchone()
                if row is None:
                    return None
                quest = Quest.from_row(dict(row), self.home.root)
                if quest.path is not None and quest.path.exists():
                    break
                # A queued file removed by hand would otherwise make every claim fail forever.
                log.error("quest %s lost its file %s; marked failed", quest.id, quest.path)
                conn.execute(
                    "UPDATE quests SET status = 'failed', reason = ?, finished_at = ? WHERE id = ?",
                    ("file missing from the queue folder", now_iso(), quest.id),
                )
            dest = self.home.queue_dir("processing") / quest.path.name
            _move(quest.path, dest)
            conn.execute(
                "UPDATE quests SET status = 'processing', path = ?, started_at = coalesce(started_at, ?)"
                " WHERE id = ?",
                (self._rel(dest), now_iso(), quest.id),
            )
        return self.get(quest.id)

    def set_progress(self, quest_id: int, offset: int, epoch: int) -> None:
        with self.store.tx() as conn:
            conn.execute(
                "UPDATE quests SET progress_offset = ?, progress_epoch = ? WHERE id = ?",
                (int(offset), int(epoch), int(quest_id)),
            )

    def finish(self, quest_id: int, status: str = "completed", reason: str | None = None) -> Quest:
        """End a battle: the file goes to recently_completed/ (completed or skipped)."""
        if status not in ("completed", "skipped"):
            raise QueueError(f"finish takes completed or skipped, not {status!r}")
        quest = self.get(quest_id)
        dest = self.home.queue_dir("recently_completed") / quest.path.name if quest.path else None
        with self.store.tx() as conn:
            if quest.path and quest.path.exists():
                _move(quest.path, dest)
            conn.execute(
                "UPDATE quests SET status = ?, reason = ?, path = ?, finished_at = ? WHERE id = ?",
                (status, reason, self._rel(dest) if dest else None, now_iso(), quest_id),
            )
        return self.get(quest_id)

    def set_priority(self, quest_id: int, priority: str) -> Quest:
        if priority not in PRIORITIES:
            raise QueueError(f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
        quest = self.get(quest_id)
        if quest.status != "queued":
            raise QueueError(f"quest {quest_id} is {quest.status}; only a queued quest can change priority")
        dest = self.home.queue_dir(priority) / quest.path.name
        with self.store.tx() as conn:
            _move(quest.path, dest)
            conn.execute(
                "UPDATE quests SET priority = ?, path = ? WHERE id = ?", (priority, self._rel(dest), quest_id)
            )
        self.events.emit("quest.priority", quest_id=quest_id, priority=priority)
        return self.get(quest_id)

    def cancel(self, quest_id: int) -> Quest:
        """Move a queued quest to failed/ with reason 'cancelled' (the file is kept)."""
        quest = self.get(quest_id)
        if quest.status != "queued":
            raise QueueError(f"quest {quest_id} is {quest.status}; only a queued quest can be cancelled")
        with self.store.tx() as conn:
            dest, err = self._to_failed(
                quest.path, quest.id, quest.name, "cancelled", {"validator": "user", "level": None}
            )
            conn.execute(
                "UPDATE quests SET status = 'cancelled', reason = 'cancelled', path = ?, error_path = ?,"
                " finished_at = ? WHERE id = ?",
                (self._rel(dest) if dest else None, self._rel(err), now_iso(), quest_id),
            )
        self.events.emit("quest.cancelled", quest_id=quest_id, name=quest.name)
        return self.get(quest_id)

    def retry(self, quest_id: int) -> Path:
        """Put a failed or cancelled quest's file back into inbox/ under its original name."""
        quest = self.get(quest_id)
        if quest.status not in ("failed", "cancelled"):
            raise QueueError(
                f"quest {quest_id} is {quest.status}; only failed or cancelled quests can be retried"
            )
        if not quest.path or not (quest.path.exists() or quest.path.is_symlink()):
            raise QueueError(f"quest {quest_id} has no file left to retry")
        dest = self.home.inbox / quest.name
        if dest.exists():
            raise QueueError(f"inbox/{quest.name} already exists; move it away first")
        with self.store.tx() as conn:
            _move(quest.path, dest, sidecar_first=True)
            conn.execute(
                "UPDATE quests SET status = 'retried', path = NULL, finished_at = ? WHERE id = ?",
                (now_iso(), quest_id),
            )
        self.events.emit("quest.retried", quest_id=quest_id, name=quest.name)
        return dest

    def recover(self) -> list[Quest]:
        """After a restart: quests left in processing go back to the front of their priority."""
        back = []
        for quest in self.list(["processing"]):
            back.append(self._to_front(quest))
            log.info("quest %s (%s) back to the front of %s", quest.id, quest.name, quest.priority)
        return back

    def requeue(self, quest_id: int, offset: int, epoch: int, *, by: int | None = None) -> Quest:
        """A preempted battle: its quest goes back to the front of its priority with the offset it
        reached, by the same move as `recover()`; the trainer resumes it there when it is claimed."""
        quest = self.get(quest_id)
        if quest.status != "processing":
            raise QueueError(f"quest {quest_id} is {quest.status}; only a quest in battle can be requeued")
        self.set_progress(quest_id, offset, epoch)
        back = self._to_front(quest)
        self.events.emit("quest.requeued", quest_id=quest_id, offset=offset, epoch=epoch, by=by)
        return back

    def _to_front(self, quest: Quest) -> Quest:
        """processing -> queued, first of its priority (a seq below every queued one)."""
        lowest = self.store.scalar(
            "SELECT coalesce(min(seq), 0) FROM quests WHERE status = 'queued' AND priority = ?",
            (quest.priority,),
        )
        dest = self.home.queue_dir(quest.priority) / quest.path.name
        with self.store.tx() as conn:
            if quest.path.exists():
                _move(quest.path, dest)
            elif not dest.exists():
                log.error("quest %s lost its file %s", quest.id, quest.path)
            conn.execute(
                "UPDATE quests SET status = 'queued', path = ?, seq = ? WHERE id = ?",
                (self._rel(dest), float(lowest) - 1, quest.id),
            )
        return self.get(quest.id)
