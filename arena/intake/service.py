"""The intake service: one file in, one quest out (queued or failed), never a lost file.

`Intake.process_file` is the single path every quest takes: the watcher, `realm intake --once`,
`realm quest add`, `realm quest retry` and the Tavern's upload endpoint all call it. A file is
first claimed by an atomic rename into `inbox/.claimed/<token>/`, so two processes (the daemon's
watcher and a CLI call) never both process it; whatever happens next, the file leaves the claim
folder through `QuestQueue.enqueue` or `QuestQueue.reject`.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from arena.intake.checks import (
    EvalIndex,
    Report,
    check_file,
    file_sha256,
    keep_original,
    rewrite_without,
    sniff,
)
from arena.intake.inbox import leftovers, still_arriving, waiting_files, writers
from arena.intake.lineage import VALIDATOR_VERSION
from arena.intake.sidecar import (
    IntakeRefusal,
    check_name,
    read_sidecar,
    safe_name,
    sidecar_path,
)
from arena.queue import Quest, QuestQueue, QueueError, now_iso
from sentinels.config import IntakeConfig, TavernConfig
from vault.events import EventLog
from vault.home import PRIORITIES, RealmHome
from vault.store import Store

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.intake")
_tokens = itertools.count()
# How long a directory or an orphan sidecar may sit in the inbox (after settle_s) before it is
# refused: long enough for a sidecar's data file still on its way, short enough to be noticed.


class UploadError(ValueError):
    """An upload refused before it reached the inbox (bad priority); safe to show. The Tavern
    answers 400 for it (and for each subclass, the status that subclass names)."""


class UploadTooLarge(UploadError):
    """An upload body over tavern.max_upload_mb (HTTP 413). Nothing is kept: it never fully arrived."""

    def __init__(self, limit_bytes: int, size: int | None = None):
        said = f"upload is {size / 2**20:.1f} MB," if size is not None else "upload is"
        super().__init__(f"{said} over the limit of {limit_bytes >> 20} MB (tavern.max_upload_mb)")
        self.limit_bytes, self.size = limit_bytes, size


class Intake:
    def __init__(
        self,
        home: RealmHome,
        store: Store,
        events: EventLog,
        cfg: IntakeConfig | None = None,
        *,
        max_upload_mb: int | None = None,
    ):
        self.home, self.store, self.events = home, store, events
        self.cfg = cfg or IntakeConfig()
        # None: the config's default, so the limit is written once (TavernConfig).
        self.max_upload_bytes = (max_upload_mb or TavernConfig().max_upload_mb) << 20
        self.queue = QuestQueue(home, store, events)
        self.claims = home.inbox / ".claimed"
        self.originals = home.queue / "originals"
        self.evals = EvalIndex(home.root / "evalsets")
        # One file at a time per process: checks are I/O-bound and the dedup test must see
        # the quest queued just before it.
        self._lock = threading.Lock()

    @classmethod
    def for_realm(cls, realm: Realm) -> Intake:
        realm.ensure()
        c = realm.config
        return cls(realm.home, realm.store, realm.events, c.intake, max_upload_mb=c.tavern.max_upload_mb)

    # ---- finding files -----------------------------------------------------------------------
    def pending(self) -> list[Path]:
        """Inbox files waiting for intake, oldest first (the one rule: `inbox.waiting_files`)."""
        return waiting_files(self.home.inbox)

    def is_settled(self, path: Path, open_for_writing: set | None = None) -> bool:
        """True once nothing is still writing the file (rules in `inbox.still_arriving`).

        `open_for_writing`: `inbox.writers()` taken once by a caller checking many files."""
        seen = writers() if open_for_writing is None else open_for_writing
        return still_arriving(path, self.cfg.settle_s, seen) is None

    def refuse_leftovers(self) -> list[Quest]:
        """Refuse directories and orphan sidecars that held still for settle_s + the grace period."""
        done = []
        for path in leftovers(self.home.inbox, self.cfg.settle_s + self.cfg.leftover_grace_s):
            log.warning("%s has sat in the inbox without becoming a quest; refusing it", path.name)
            if (quest := self.process_file(path)) is not None:
                done.append(quest)
        return done

    def scan(self, *, wait: bool = True, settle: bool = True, max_wait_s: float = 30.0) -> list[Quest]:
        """Process every file now in the inbox, oldest first.

        A file still growing (changed within settle_s) is waited for up to max_wait_s when `wait`,
        or left for the next pass when not (what a polling daemon wants). settle=False skips the
        check: the caller guarantees every file is complete (tests, scripts that wrote them).
        """
        done = self.refuse_leftovers()
        deadline = time.monotonic() + max_wait_s
        for path in self.pending():
            if settle:
                while wait and not self.is_settled(path) and time.monotonic() < deadline:
                    time.sleep(min(0.1, self.cfg.settle_s))
                if not self.is_settled(path):
                    log.info("%s is still being written; left in the inbox for the next pass", path.name)
                    continue
            quest = self.process_file(path)
            if quest is not None:
                done.append(quest)
        return done

    def recover_claims(self) -> list[Path]:
        """After a crash: files left mid-intake go back to the inbox.

        Only claims of processes that are gone: a claim token starts with its claimer's pid, and a
        live claimer (this process's own watcher or scan included) is still working on its file.
        Taking that file back once made one drop two quests, the first refused as an internal error."""
        back = []
        if not self.claims.is_dir():
            return back
        for tok in self.claims.iterdir():
            if _claimer_alive(tok.name):
                continue
            for p in sorted(tok.iterdir(), key=lambda p: p.name.endswith(".meta.json"), reverse=True):
                dest = self.home.inbox / p.name
                if not dest.exists():
                    os.replace(p, dest)
                    back.append(dest)
            _drop_empty(tok)
        return back

    # ---- the one path ------------------------------------------------------------------------
    def process_file(
        self, path: str | Path, *, priority: str | None = None, source: str = "inbox"
    ) -> Quest | None:
        """Check one inbox file and queue or refuse it; None if another process took it first."""
        path = Path(path)
        if priority is not None and priority not in PRIORITIES:
            raise QueueError(f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
        with self._lock:
            refusal = None
            try:
                check_name(path, self.home.inbox)
            except IntakeRefusal as exc:
                refusal = exc
            except FileNotFoundError:
                return None
            work = self._claim(path)
            if work is None:
                return None
            try:
                size = work.lstat().st_size
                self.events.emit("quest.received", name=path.name, size=size, source=source)
                if refusal is not None:
                    return self._refuse(work, path.name, refusal, source=source)
                return self._process(work, path.name, priority, source)
            except IntakeRefusal as exc:
                return self._refuse(work, path.name, exc, source=source)
            except Exception as exc:  # a bug in a check must neither kill the daemon nor lose the file
                log.exception("intake of %s failed", path.name)
                return self._refuse(
                    work,
                    path.name,
                    IntakeRefusal("intake.internal", f"internal error while checking ({exc!r}); report this"),
                    source=source,
                )
            finally:
                _drop_empty(work.parent)

    def _claim(self, path: Path) -> Path | None:
        token = self.claims / f"{os.getpid()}-{next(_tokens)}-{time.monotonic_ns()}"
        token.mkdir(parents=True)
        work = token / path.name
        try:
            os.rename(path, work)  # the claim: exactly one renamer wins
        except FileNotFoundError:
            token.rmdir()
            return None
        side = sidecar_path(path)
        if side.exists():
            os.rename(side, sidecar_path(work))
        return work

    def _process(self, work: Path, name: str, priority: str | None, source: str) -> Quest:
        cfg = self.cfg
        if found := sniff(work):
            return self._refuse(work, name, IntakeRefusal(*found), source=source)
        size = work.stat().st_size
        if size > cfg.max_file_mb << 20:
            return self._refuse(
                work,
                name,
                IntakeRefusal(
                    "intake.size",
                    f"file is {size / 2**20:.0f} MB; the largest quest accepted is {cfg.max_file_mb} MB"
                    " (intake.max_file_mb): split it",
                ),
                source=source,
            )
        side = read_sidecar(work)
        source = side.data.get("source", source)  # a guild quest is the guild's, refused or not
        quarantine = self.evals.prompts() if (cfg.quarantine or cfg.level == "deep") else None
        rep = check_file(
            work,
            spec=side.spec,
            level=cfg.level,
            max_errors=cfg.max_errors,
            max_line_bytes=cfg.max_line_mb << 20,
            quarantine=quarantine or None,
        )
        lineage = self._lineage(rep, name, side.lineage())
        fields = dict(spec=rep.spec, sha256=rep.sha256, size_bytes=rep.size_bytes, line_count=rep.line_count)
        if not rep.ok:
            return self._reject(work, name, rep.reason(), rep.error_body(), lineage, source, **fields)
        if earlier := self.queue.known_sha(rep.sha256):
            msg = f"duplicate file: same sha256 as quest #{earlier.id} ({earlier.name}, {earlier.status})"
            body = {
                "validator": "dedup.file",
                "validator_version": VALIDATOR_VERSION,
                "level": rep.level,
                "spec": rep.spec,
                "duplicate_of": earlier.id,
                "lines": [],
                "errors": [],
            }
            lineage["validator"] = "dedup.file"
            return self._reject(work, name, msg, body, lineage, source, **fields)
        if rep.duplicates_dropped:
            # Nothing is ever deleted: the dropped file's exact bytes stay under its sha256 (the
            # one in the quests table), and the queued file is the copy without the duplicates.
            lineage["original_path"] = str(
                keep_original(work, self.originals, rep.sha256).relative_to(self.home.root)
            )
            lineage["sha256_queued"] = rewrite_without(work, rep.dup_lines)
        meta = rep.first_meta if rep.spec == "skill_v1" else {}
        return self.queue.enqueue(
            work,
            name=name,
            priority=priority or side.priority or "normal",
            example_count=rep.example_count,
            duplicates_dropped=rep.duplicates_dropped,
            source=source,
            skill=side.data.get("skill", meta.get("skill")),
            level=side.data.get("level", meta.get("level")),
            lineage=lineage,
            **fields,
        )

    def _lineage(self, rep: Report, name: str, provenance: dict[str, Any]) -> dict[str, Any]:
        return {
            "original_name": name,
            "received_at": now_iso(),
            "sha256": rep.sha256,
            "size_bytes": rep.size_bytes,
            "line_count": rep.line_count,
            "example_count": rep.example_count,
            "duplicates_dropped": rep.duplicates_dropped,
            "spec": rep.spec,
            "level": rep.level,
            "validator": rep.validator if not rep.ok else None,
            "validators": {"intake.content": VALIDATOR_VERSION, f"spec.{rep.spec}": VALIDATOR_VERSION},
            **provenance,
        }

    def _refuse(self, work: Path, name: str, exc: IntakeRefusal, *, source: str) -> Quest:
        sha = size = None
        if work.is_file() and not work.is_symlink():
            size = work.stat().st_size
            if size <= self.cfg.max_file_mb << 20:
                sha = file_sha256(work)
        provenance: dict[str, Any] = {}
        if exc.validator != "intake.sidecar":
            try:
                provenance = read_sidecar(work).lineage()
            except IntakeRefusal:
                pass
        lineage = {
            "original_name": name,
            "received_at": now_iso(),
            "sha256": sha,
            "size_bytes": size,
            "validator": exc.validator,
            **provenance,
        }
        body = {
            "validator": exc.validator,
            "validator_version": VALIDATOR_VERSION,
            "level": self.cfg.level,
            "spec": None,
            "lines": [],
            "errors": [],
            **exc.extra,
        }
        return self._reject(work, name, exc.message, body, lineage, source, sha256=sha, size_bytes=size)

    def _reject(
        self, work: Path, name: str, reason: str, body: dict, lineage: dict, source: str, **fields
    ) -> Quest:
        body["hint"] = "fix the file, then run `realm quest retry ID` (or drop the fixed file into inbox/)"
        quest = self.queue.reject(
            work, name=name, reason=reason, error=body, lineage=lineage, source=source, **fields
        )
        log.warning("quest %s (%s) refused: %s", quest.id, name, reason)
        return quest

    # ---- uploads -----------------------------------------------------------------------------
    def accept_upload(
        self,
        filename: str,
        data: bytes | IO[bytes],
        priority: str | None = None,
        meta: dict[str, Any] | None = None,
        *,
        wait_s: float = 30.0,
    ) -> Quest:
        """Take an upload into the inbox under a safe name, then run intake on it.

        Raises UploadError for a bad priority or a body over tavern.max_upload_mb (nothing is kept:
        the file never fully arrived). Every other problem ends as a failed quest, file kept.
        """
        if priority is not None and priority not in PRIORITIES:
            raise UploadError(f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
        self.home.inbox.mkdir(parents=True, exist_ok=True)
        tmp = self.home.inbox / f".upload-{os.getpid()}-{next(_tokens)}.part"
        try:
            _write_limited(tmp, data, self.max_upload_bytes)
            dest = _free_name(self.home.inbox, safe_name(filename))
            side = {**(meta or {}), **({"priority": priority} if priority else {})}
            if side:
                stmp = tmp.with_suffix(".meta.part")
                stmp.write_bytes(orjson.dumps(side))
                os.replace(stmp, sidecar_path(dest))  # the sidecar first: intake reads it with the file
            after = self.store.scalar("SELECT coalesce(max(id), 0) FROM quests")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return self.process_file(dest, source="upload") or self.await_quest(dest.name, after, wait_s)

    def await_quest(self, name: str, after_id: int, timeout_s: float) -> Quest:
        """The quest a concurrent intake (the daemon's watcher) made of `name`."""
        deadline = time.monotonic() + timeout_s
        while True:
            qid = self.store.scalar(
                "SELECT min(id) FROM quests WHERE name = ? AND id > ?", (name, int(after_id))
            )
            if qid:
                return self.queue.get(qid)
            if time.monotonic() > deadline:
                raise QueueError(
                    f"{name} was taken by another intake and no quest appeared in {timeout_s:.0f}s"
                )
            time.sleep(0.05)


def _claimer_alive(token: str) -> bool:
    try:
        pid = int(token.split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _drop_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (a file is still mid-intake there) or already gone


def _free_name(folder: Path, name: str) -> Path:
    dest = folder / name
    stem, suffix = dest.stem, dest.suffix
    for i in itertools.count(2):
        if not dest.exists() and not sidecar_path(dest).exists():
            return dest
        dest = folder / f"{stem}-{i}{suffix}"
    raise AssertionError("unreachable")


def _write_limited(tmp: Path, data: bytes | IO[bytes], limit: int) -> None:
    with open(tmp, "wb") as out:
        if isinstance(data, bytes | bytearray | memoryview):
            if len(data) > limit:
                raise UploadTooLarge(limit, len(data))
            out.write(data)
            return
        total = 0
        while chunk := data.read(1 << 20):
            total += len(chunk)
            if total > limit:
                raise UploadTooLarge(limit)
            out.write(chunk)
