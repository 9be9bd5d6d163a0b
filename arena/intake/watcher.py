"""The inbox watcher: watchdog events in, settled files out to `Intake.process_file`.

watchdog (7.x) tells us a path was created, written, closed or moved in; it cannot tell us the
writer is done. So every event only marks the path as pending, and a worker thread hands a
pending file to intake once it has kept the same size and mtime for `settle_s` (a 500 MB copy in
progress keeps changing both). On start the worker also takes everything already in the inbox,
and it lists the folder every `rescan_s` (0.1 s): watchdog's inotify buffer holds every event
~0.5 s to pair moves, and an overflow can drop events, so the listing keeps drop-to-queued
latency near settle_s and makes a lost event harmless. Listing a small folder costs microseconds.
A file that has held still is still not handed over while a process holds it open for writing
(the claim rule in `inbox`), and each listing also refuses inbox leftovers (directories, orphan
sidecars) once they have sat there for settle_s plus intake's grace period.

Use `start()`/`stop()` from the daemon, or `run(stop_event)` in a thread of your own.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from arena.intake.inbox import writers
from arena.intake.service import Intake
from arena.intake.sidecar import is_ignored

log = logging.getLogger("realm.intake.watcher")


class _InboxHandler(FileSystemEventHandler):
    def __init__(self, watcher: InboxWatcher):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("created", "modified", "moved", "closed", "attrib"):
            return
        path = event.dest_path if event.event_type == "moved" else event.src_path
        if isinstance(path, bytes):
            path = path.decode(errors="surrogateescape")
        self.watcher.touch(Path(path))


class InboxWatcher:
    """Runs intake continuously on the realm's inbox until stopped."""

    def __init__(self, intake: Intake, *, poll_s: float = 0.05, rescan_s: float = 0.1):
        self.intake = intake
        self.inbox = intake.home.inbox
        self.settle_s = intake.cfg.settle_s
        self.poll_s, self.rescan_s = poll_s, rescan_s
        self._pending: dict[Path, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, seen at)
        self._deferred: set[Path] = set()  # settled-looking files a writer still holds (logged once)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0

    # ---- events ------------------------------------------------------------------------------
    def touch(self, path: Path) -> None:
        """Mark a path as pending (or restart its settle clock)."""
        if path.parent != self.inbox or is_ignored(path.name):
            if path.name.endswith(".meta.json") and path.parent == self.inbox:
                # A sidecar landing after its file restarts the file's settle clock.
                path = path.with_name(path.name[: -len(".meta.json")])
            else:
                return
        if path.is_dir() and not path.is_symlink():
            return  # a folder is never a quest: `Intake.refuse_leftovers` refuses it after its grace
        with self._lock:
            self._pending[path] = (-1, -1, time.monotonic())

    def _rescan(self) -> None:
        for p in self.intake.pending():
            with self._lock:
                self._pending.setdefault(p, (-1, -1, time.monotonic()))
        try:
            self.processed += len(self.intake.refuse_leftovers())
        except Exception:  # the daemon outlives any one bad entry; process_file keeps it
            log.exception("refusing inbox leftovers failed")

    def _ready(self) -> list[Path]:
        """Pending paths whose size and mtime have not moved for settle_s, and that nothing is
        still writing (`Intake.is_settled`: a writer paused mid-line keeps its file pending)."""
        now = time.monotonic()
        ready = []
        open_for_writing: set | None = None
        looked = False
        with self._lock:
            for path, (size, mtime, since) in list(self._pending.items()):
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    del self._pending[path]  # moved away or taken by another intake
                    self._deferred.discard(path)
                    continue
                sig = (st.st_size, st.st_mtime_ns)
                if sig != (size, mtime):
                    # The settle clock starts at the last write (mtime), not when we noticed it:
                    # a file renamed in whole after being written elsewhere is ready at once.
                    age = max(0.0, time.time() - st.st_mtime)
                    self._pending[path] = (*sig, now - age)
                elif now - since >= self.settle_s:
                    if not looked:  # one look at /proc per pass, only when some file is due
                        open_for_writing, looked = writers(), True
                    if not self.intake.is_settled(path, open_for_writing):
                        if path not in self._deferred:
                            self._deferred.add(path)
                            log.info("%s looks still but is still being written; waiting", path.name)
                        self._pending[path] = (size, mtime, now)  # look again after settle_s
                        continue
                    del self._pending[path]
                    self._deferred.discard(path)
                    ready.append(path)
        return sorted(ready, key=lambda p: p.name)

    # ---- lifecycle ---------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Watch until `stop` is set; the observer is always stopped and joined."""
        stop = stop or self._stop
        self.inbox.mkdir(parents=True, exist_ok=True)
        for p in self.intake.recover_claims():
            log.info("back from an interrupted intake: %s", p.name)
        observer = Observer()
        observer.schedule(_InboxHandler(self), str(self.inbox), recursive=False)
        observer.start()
        try:
            self._rescan()  # files dropped while the realm was down
            last_scan = time.monotonic()
            log.info("watching %s (settle %.2fs)", self.inbox, self.settle_s)
            while not stop.is_set():
                for path in self._ready():
                    if stop.is_set():
                        break
                    self._process(path)
                if time.monotonic() - last_scan >= self.rescan_s:
                    self._rescan()
                    last_scan = time.monotonic()
                stop.wait(self.poll_s)
        finally:
            observer.stop()
            observer.join()
            log.info("inbox watcher stopped")

    def _process(self, path: Path) -> None:
        try:
            quest = self.intake.process_file(path)
        except Exception:  # the daemon outlives any one bad file; process_file keeps the file
            log.exception("intake of %s failed", path)
            return
        if quest is not None:
            self.processed += 1

    def start(self) -> InboxWatcher:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="inbox-watcher", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> InboxWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
