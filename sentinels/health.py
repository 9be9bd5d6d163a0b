"""Health: is the realm well? `realm health [--json]`, the Tavern's GET /api/health, the guardian's
stuck check.

Each check has a name and a status, `ok`, `warn` (shown, not a failure), `fail` or `skip` (it could
not apply: no arena running, or the database failed first):

    service.<name>   every service the hosts registry assigns to this host (and the guardian) holds
                     its lock in run/, and an HTTP one answers GET /health
    trainer          a fighting trainer took a step within sentinels.stuck_after_s (else: stuck)
    database         PRAGMA quick_check on realm.db
    disk             free space on the home's disk against sentinels.min_free_gb (fail) and
                     sentinels.warn_free_gb (warn)
    queue            every queued or processing quest's file is in its folder, and every file in
                     queue/{high,normal,low,processing}/ is such a quest's
    checkpoints      the checkpoint folders in models/ are the ledger's live rows, and no partial
                     folder is left by a dead writer

Reads only, each through its owner's functions (`QuestQueue`, `vault.ledger.Ledger`,
`arena.control.battle_state`, the event log, `sentinels.locks`); it writes nothing and never opens
the database through `Store.migrate`. Two states move in two steps (a quest file renamed, then its
row; a checkpoint folder renamed, then landed), so a mismatch is read twice and reported only if it
is still there the second time.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from sentinels.diskguard import GB, fmt_bytes, free_bytes
from sentinels.locks import is_held, read_pid

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.sentinels.health")

HTTP_SERVICES = ("tavern", "vault", "oracle")
DB_CHECKS = ("trainer", "queue", "checkpoints")  # they read realm.db: skipped when it fails
RECHECK_S = 0.3  # a two-step move (rename, then row) finishes well inside this
QUEUE_FOLDERS = ("high", "normal", "low", "processing")
TMP_RE = re.compile(r"^\.tmp-.*-(\d+)$")  # arena.checkpoints' temp folders end with the writer's pid


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "message": self.message, **self.details}


# ---- services -----------------------------------------------------------------------------------
def expected_services(realm: Realm) -> list[str]:
    """The guardian plus what the hosts registry assigns to this host."""
    from sentinels.guardian import assigned_services

    return ["guardian", *assigned_services(realm.config)]


def service_url(realm: Realm, name: str) -> str:
    """Where this host's `name` answers: the registry's entry for this host, else the config's port."""
    from sentinels.guardian import this_host
    from sentinels.hosts import client_address, load_hosts

    host = this_host(load_hosts(realm.config))
    if name in host.services:
        return host.url(name)
    return f"http://{client_address(realm.config.bind)}:{getattr(realm.config.ports, name)}"


def check_service(realm: Realm, name: str) -> Check:
    run = realm.home.run
    check = f"service.{name}"
    if not is_held(run, name):
        return Check(check, "fail", f"{name} is not running (no process holds run/{name}.lock)")
    pid = read_pid(run / f"{name}.lock")
    if name not in HTTP_SERVICES:
        return Check(check, "ok", f"{name} runs (pid {pid})", {"pid": pid})
    url = f"{service_url(realm, name)}/health"
    try:
        resp = requests.get(url, timeout=realm.config.sentinels.http_timeout_s)
    except requests.RequestException as exc:
        return Check(check, "fail", f"{name} (pid {pid}) holds its lock but {url} does not answer: {exc}",
                     {"pid": pid, "url": url})  # fmt: skip
    if resp.status_code != 200:
        return Check(check, "fail", f"{name} (pid {pid}): {url} answered {resp.status_code}",
                     {"pid": pid, "url": url})  # fmt: skip
    return Check(check, "ok", f"{name} runs (pid {pid}) and {url} answers", {"pid": pid, "url": url})


# ---- the trainer --------------------------------------------------------------------------------
def stuck_reason(realm: Realm, now: float | None = None) -> str | None:
    """Why the trainer is stuck, or None: it is fighting, and neither a step event, its published
    state, nor its start (the arena lock's mtime) is newer than sentinels.stuck_after_s."""
    from arena.control import battle_state

    run = realm.home.run
    if not is_held(run, "arena"):
        return None
    battle = battle_state(realm.store)
    if battle.get("state") != "fighting":
        return None
    now = time.time() if now is None else now
    step = realm.events.latest("step")
    marks = [float(battle.get("updated") or 0), step.ts if step else 0.0]
    try:
        marks.append((run / "arena.lock").stat().st_mtime)  # written when this arena took its lock
    except FileNotFoundError:
        pass
    quiet = now - max(marks)
    limit = realm.config.sentinels.stuck_after_s
    if quiet <= limit:
        return None
    return (
        f"fighting quest {battle.get('quest_id')} at step {battle.get('step')} with no step for "
        f"{quiet:.0f} s (sentinels.stuck_after_s = {limit:g})"
    )


def check_trainer(realm: Realm) -> Check:
    from arena.control import battle_state

    if not is_held(realm.home.run, "arena"):
        return Check("trainer", "skip", "no arena runs")
    why = stuck_reason(realm)
    if why:
        return Check("trainer", "fail", f"stuck: {why}")
    battle = battle_state(realm.store)
    state = battle.get("state", "idle")
    extra = f" ({battle['paused_reason']})" if battle.get("paused_reason") else ""
    return Check("trainer", "ok", f"{state}{extra} at step {battle.get('step')}",
                 {"state": state, "step": battle.get("step")})  # fmt: skip


# ---- the database and the disk ------------------------------------------------------------------
def check_database(realm: Realm) -> Check:
    path = realm.home.db_path
    if not path.is_file():
        return Check("database", "fail", f"{path} does not exist (run `realm init`)")
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return Check("database", "fail", f"{path}: {exc}")
    if rows == ["ok"]:
        return Check("database", "ok", "quick_check ok")
    return Check("database", "fail", f"{path}: quick_check found {len(rows)} problem(s): {rows[0]}",
                 {"problems": rows[:20]})  # fmt: skip


def check_disk(realm: Realm) -> Check:
    cfg = realm.config.sentinels
    free = free_bytes(realm.home.root)
    details = {"free_bytes": free, "min_free_gb": cfg.min_free_gb, "warn_free_gb": cfg.warn_free_gb}
    where = f"{fmt_bytes(free)} free at {realm.home.root}"
    if free < cfg.min_free_gb * GB:
        return Check("disk", "fail", f"{where}, below sentinels.min_free_gb = {cfg.min_free_gb:g}: "
                     "checkpoints pause until space is freed", details)  # fmt: skip
    if free < cfg.warn_free_gb * GB:
        return Check("disk", "warn", f"{where}, below sentinels.warn_free_gb = {cfg.warn_free_gb:g}", details)
    return Check("disk", "ok", where, details)


# ---- the queue and the checkpoints ----------------------------------------------------------------
def _twice(read: Callable[[], dict[str, list[str]]]) -> dict[str, list[str]]:
    """Problems seen by two reads RECHECK_S apart (a move in progress between them is not one)."""
    first = read()
    if not any(first.values()):
        return first
    time.sleep(RECHECK_S)
    second = read()
    return {k: sorted(set(v) & set(first.get(k, []))) for k, v in second.items()}


def queue_problems(realm: Realm) -> dict[str, list[str]]:
    from arena.queue import QuestQueue

    queue = QuestQueue(realm.home, realm.store, realm.events)
    root = realm.home.root
    missing, misplaced, known = [], [], set()
    for q in queue.list(["queued", "processing"], limit=10**9):
        folder = "processing" if q.status == "processing" else q.priority
        if q.path is None or not q.path.is_file():
            missing.append(f"quest {q.id} ({q.status}): {q.path.relative_to(root) if q.path else 'no path'}")
            continue
        known.add(q.path.resolve())
        if q.path.parent != realm.home.queue_dir(folder):
            misplaced.append(
                f"quest {q.id} ({q.status}) is in {q.path.parent.relative_to(root)}, not queue/{folder}"
            )
    orphans = [
        str(p.relative_to(root))
        for name in QUEUE_FOLDERS
        if realm.home.queue_dir(name).is_dir()
        for p in realm.home.queue_dir(name).iterdir()
        if p.is_file() and not p.name.endswith(".meta.json") and p.resolve() not in known
    ]
    return {"missing_files": missing, "misplaced": misplaced, "orphan_files": sorted(orphans)}


def check_queue(realm: Realm) -> Check:
    found = _twice(lambda: queue_problems(realm))
    n = sum(len(v) for v in found.values())
    if not n:
        return Check("queue", "ok", "queue folders agree with the quests table")
    first = next(f"{k.replace('_', ' ')}: {v[0]}" for k, v in found.items() if v)
    return Check("queue", "fail", f"{n} disagreement(s) between queue/ and the quests table; {first}", found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def checkpoint_problems(realm: Realm) -> dict[str, list[str]]:
    from vault.ids import CANONICAL_RE
    from vault.ledger import SIDECAR, Ledger

    models = realm.home.models
    folders, partial = set(), []
    for p in sorted(models.iterdir()) if models.is_dir() else []:
        tmp = TMP_RE.match(p.name)
        if tmp and not _alive(int(tmp.group(1))):
            partial.append(p.name)  # its writer died: the arena removes it when it starts
        elif p.name.startswith(".trash-"):
            partial.append(p.name)
        elif CANONICAL_RE.match(p.name) and p.is_dir():
            if (p / SIDECAR).is_file():
                folders.add(p.name)
            else:
                partial.append(p.name)
    rows = {r["name"] for r in Ledger(realm.store).list(limit=10**9)}
    return {
        "not_in_ledger": sorted(folders - rows),
        "missing_folders": sorted(rows - folders),
        "partial_folders": partial,
    }


def check_checkpoints(realm: Realm) -> Check:
    found = _twice(lambda: checkpoint_problems(realm))
    n = sum(len(v) for v in found.values())
    if not n:
        return Check("checkpoints", "ok", "checkpoint folders agree with the ledger")
    first = next(f"{k.replace('_', ' ')}: {v[0]}" for k, v in found.items() if v)
    return Check("checkpoints", "fail", f"{n} disagreement(s) between models/ and the ledger; {first}", found)


# ---- all of them --------------------------------------------------------------------------------
CHECKS: dict[str, Callable[[Realm], Check]] = {
    "database": check_database,
    "disk": check_disk,
    "trainer": check_trainer,
    "queue": check_queue,
    "checkpoints": check_checkpoints,
}


def check_names(realm: Realm) -> list[str]:
    return [f"service.{s}" for s in expected_services(realm)] + list(CHECKS)


def run_checks(realm: Realm, only: list[str] | None = None) -> dict[str, Any]:
    """Every check (or those `only` names: a full name, or a prefix such as `service`), as
    {"ok", "problems", "checks": {name: {"status", "ok", "message", ...}}, "took_s"}."""
    from sentinels.hosts import HostsError, ServiceNotFound

    t0 = time.monotonic()
    try:
        names = check_names(realm)
    except (HostsError, ServiceNotFound) as exc:  # a bad hosts.yaml is a problem to show, not a crash
        bad = Check("hosts", "fail", str(exc))
        return {"ok": False, "problems": ["hosts"], "home": str(realm.home.root),
                "checks": {"hosts": bad.to_dict()}, "took_s": round(time.monotonic() - t0, 3)}  # fmt: skip
    if only:
        unknown = [o for o in only if not any(n == o or n.startswith(o + ".") for n in names)]
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; checks: {', '.join(names)}")
        names = [n for n in names if any(n == o or n.startswith(o + ".") for o in only)]
    results: dict[str, Check] = {}
    db_ok = True
    for name in ["database", *(n for n in names if n != "database")] if "database" in names else names:
        if name in DB_CHECKS and not db_ok:
            results[name] = Check(name, "skip", "the database failed its check")
            continue
        try:
            fn = CHECKS.get(name)
            results[name] = fn(realm) if fn else check_service(realm, name.split(".", 1)[1])
        except (sqlite3.DatabaseError, OSError) as exc:
            results[name] = Check(name, "fail", f"{type(exc).__name__}: {exc}")
        if name == "database":
            db_ok = results[name].ok
    checks = {n: results[n].to_dict() for n in names}
    problems = [n for n in names if not results[n].ok]
    return {
        "ok": not problems,
        "problems": problems,
        "home": str(realm.home.root),
        "checks": checks,
        "took_s": round(time.monotonic() - t0, 3),
    }
