"""Soak: kill -9 the realm's services at random moments under `realm up`, then count the damage. Prints JSON.

    .venv/bin/python bench/soak.py [--kills 50] [--seed 0] [--kill-budget-s 480] [--keep]

A fresh home on free ports runs `realm up` (guardian, arena, Tavern, Vault, Oracle) with a small
training setup that checkpoints every 5 steps. While it runs:
  - a feeder drops a new BIN-like quest into inbox/ whenever fewer than two wait (through intake);
  - a pusher asks the VaultKeeper API to push `latest` to a folder zone `backup`, over and over;
  - a streamer streams chat completions from the Oracle (`dio@soak`, an alias kept on an early
    checkpoint so retention never takes its folder).
Then `--kills` SIGKILLs, seeded: each round kills the arena, the Vault and the Oracle once in a
random order; each kill waits a random 0.2-3 s after the service is back, and half the kills wait
further for the moment that hurts: the arena mid-save (a `.tmp-checkpoint-*` folder exists), the
Vault mid-push (a `.partial-*` staging folder in the zone), the Oracle mid-stream (a chunk has
arrived and the stream is still open). Each restart's latency runs from the kill to the new process
holding its lock and, for the Vault and the Oracle, answering GET /health.

Afterwards the feeder stops, the queue drains, `realm down` stops everything, and the bench reports:
quests lost (a dropped file that never completed) or duplicated (completed twice, or two live rows
for one file) - want 0; partial checkpoints listed (ledger vs folders, leftovers, local copies that
fail `realm vault verify`) - want 0; partial copies listed (zone copies that fail verify) - want 0;
and the restart latencies (median, p95, max), per service and overall.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import REALM_PY, bin_chats, clean_env, free_ports, wait_until, write_home_config  # noqa: E402
from sentinels.locks import is_held, read_pid  # noqa: E402

TARGETS = ("arena", "vault", "oracle")
MOMENTS = {"arena": "mid-save", "vault": "mid-push", "oracle": "mid-stream"}
MOMENT_WAIT_S = 30.0  # a moment not seen by then: the kill happens anyway, counted as random
PROMPT = "Compute: add(①⓪①, ①①)"


class Soak:
    def __init__(self, base: Path, seed: int):
        self.base, self.home, self.zone = base, base / "home", base / "zone"
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.streaming = threading.Event()
        self.dropped: dict[str, str] = {}  # sha256 -> file name
        self.counters: dict[str, int] = {}  # what the load saw, by outcome (refused: its server was down)
        self.ports: dict[str, int] = {}

    # ---- the realm ---------------------------------------------------------------------------
    def realm(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, str(REALM_PY), *args, "--home", str(self.home)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
            cwd=REPO,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"realm {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def setup(self) -> None:
        self.home.mkdir(parents=True)
        self.zone.mkdir()
        self.ports = dict(zip(("tavern", "oracle", "vault", "officer"), free_ports(4), strict=True))
        write_home_config(
            self.home,
            {
                **{f"ports.{k}": v for k, v in self.ports.items()},
                "guild.auto_generate": False,
                "guild.skills": ["bin"],
                "guild.eval_size": 2,
                "intake.quarantine": False,
                "intake.level": "quick",
                "intake.settle_s": 0.1,
                "training.batch_size": 2,
                "training.max_length": 128,
                "training.save_steps": 5,
                "training.keep_last": 3,
                "training.eval_every": 100_000,
                "training.warmup_steps": 5,
                "training.event_interval_s": 0.0,
                "training.threads": 1,
                "vault.keep_hourly_h": 0,
                "vault.keep_daily_d": 0,
                "vault.keep_weekly": False,
            },
        )
        self.realm("init")
        self.realm("vault", "zone", "add", "backup", str(self.zone))
        self.realm("up", timeout=60)

    def holder(self, name: str) -> int | None:
        run = self.home / "run"
        return read_pid(run / f"{name}.lock") if is_held(run, name) else None

    def answers(self, name: str) -> bool:
        if name == "arena":
            return True  # no HTTP: holding its lock is being up
        try:
            return requests.get(f"http://127.0.0.1:{self.ports[name]}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def up(self, name: str, timeout: float = 120) -> int:
        return wait_until(
            lambda: self.answers(name) and self.holder(name), timeout, f"{name} up", interval=0.02
        )

    # ---- the load ----------------------------------------------------------------------------
    def feeder(self) -> None:
        from arena.intake.inbox import waiting_files
        from arena.queue import QuestQueue
        from sentinels.realm import Realm

        realm = Realm.open(self.home)
        queue = QuestQueue(realm.home, realm.store, realm.events)
        n = 0
        while not self.stop.wait(0.3):
            try:
                counts = queue.counts()
            except Exception:  # a killed writer's lock: try again on the next tick
                continue
            if counts["queued"] + counts["processing"] >= 2 or waiting_files(realm.home.inbox):
                continue
            n += 1
            name = f"soak-{n:03d}.jsonl"
            body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bin_chats(24, seed=10_000 + n))
            tmp = realm.home.inbox / f".{name}.part"
            tmp.write_text(body, encoding="utf-8")
            self.dropped[hashlib.sha256(body.encode()).hexdigest()] = name
            os.replace(tmp, realm.home.inbox / name)
        realm.store.close()

    def pusher(self) -> None:
        url = f"http://127.0.0.1:{self.ports['vault']}/api/transfer"
        while not self.stop.wait(0.2):
            try:
                r = requests.post(url, json={"asset": "latest", "to": "backup"}, timeout=120)
                self.count("push", "ok" if r.status_code == 200 else f"http_{r.status_code}")
            except requests.RequestException as exc:
                self.count("push", outcome(exc))
                self.stop.wait(0.3)

    def streamer(self) -> None:
        url = f"http://127.0.0.1:{self.ports['oracle']}/v1/chat/completions"
        body = {
            "model": "dio@soak",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 256,
            "ignore_eos": True,
            "stream": True,
        }
        while not self.stop.is_set():
            try:
                with requests.post(url, json=body, stream=True, timeout=120) as r:
                    for line in r.iter_lines():
                        if line.startswith(b"data:"):
                            self.streaming.set()
                        if self.stop.is_set():
                            break
                self.count("stream", "ok" if r.status_code == 200 else f"http_{r.status_code}")
            except requests.RequestException as exc:
                self.count("stream", outcome(exc))
                self.stop.wait(0.3)
            finally:
                self.streaming.clear()

    def count(self, what: str, result: str) -> None:
        key = f"{what}_{result}"
        self.counters[key] = self.counters.get(key, 0) + 1

    # ---- the kills ---------------------------------------------------------------------------
    def moment(self, name: str) -> bool:
        """Wait for the moment that hurts `name`; False when it did not come in time."""
        models = self.home / "models"

        def seen() -> bool:
            if name == "oracle":
                return self.streaming.is_set()
            where, prefix = (models, ".tmp-checkpoint") if name == "arena" else (self.zone, ".partial-")
            try:
                return any(e.name.startswith(prefix) for e in os.scandir(where))
            except FileNotFoundError:
                return False

        deadline = time.monotonic() + MOMENT_WAIT_S
        while time.monotonic() < deadline:
            if seen():
                return True
            time.sleep(0.002)
        return False

    def kill(self, name: str, want_moment: bool) -> dict:
        self.up(name)
        time.sleep(self.rng.uniform(0.2, 3.0))
        hit = self.moment(name) if want_moment else False
        pid = self.holder(name)
        if pid is None:  # it died on its own meanwhile: wait for it, then take it
            pid = self.up(name)
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        wait_until(
            lambda: self.holder(name) not in (None, pid) and self.answers(name),
            180,
            f"{name} restarted",
            interval=0.02,
        )
        return {
            "service": name,
            "moment": MOMENTS[name] if hit else "random",
            "latency_s": round(time.monotonic() - t0, 3),
        }

    def schedule(self, kills: int) -> list[tuple[str, bool]]:
        out: list[str] = []
        while len(out) < kills:
            rnd = list(TARGETS)
            self.rng.shuffle(rnd)
            if out and rnd[0] == out[-1]:  # no service killed twice in a row
                rnd.reverse()
            out += rnd
        return [(name, self.rng.random() < 0.5) for name in out[:kills]]

    # ---- the count ---------------------------------------------------------------------------
    def drain(self, timeout: float) -> bool:
        from arena.intake.inbox import waiting_files
        from arena.queue import QuestQueue
        from sentinels.realm import Realm

        realm = Realm.open(self.home)
        queue = QuestQueue(realm.home, realm.store, realm.events)

        def empty() -> bool:
            c = queue.counts()
            claimed = realm.home.inbox / ".claimed"
            busy = claimed.is_dir() and any(claimed.iterdir())
            return not (c["queued"] or c["processing"] or waiting_files(realm.home.inbox) or busy)

        try:
            wait_until(empty, timeout, "the queue to drain", interval=0.5)
            return True
        except AssertionError:
            return False
        finally:
            realm.store.close()

    def quests(self) -> dict:
        from arena.queue import QuestQueue
        from sentinels.realm import Realm

        realm = Realm.open(self.home)
        rows = QuestQueue(realm.home, realm.store, realm.events).list(limit=10**6)
        ends = realm.events.since(0, kinds=["battle.end"], limit=10**6)
        realm.store.close()
        completed_twice = {
            qid
            for qid in {e.payload["quest_id"] for e in ends}
            if sum(1 for e in ends if e.payload["quest_id"] == qid and e.payload["status"] == "completed") > 1
        }
        lost, duplicated, statuses = [], [], {}
        for sha, name in self.dropped.items():
            mine = [q for q in rows if q.sha256 == sha]
            for q in mine:
                statuses[q.status] = statuses.get(q.status, 0) + 1
            live = [q for q in mine if q.status in ("queued", "processing", "completed")]
            if not any(q.status == "completed" for q in mine):
                lost.append({"file": name, "rows": [(q.id, q.status, q.reason) for q in mine]})
            if len(live) > 1 or any(q.id in completed_twice for q in mine):
                duplicated.append({"file": name, "rows": [(q.id, q.status) for q in mine]})
        return {
            "dropped": len(self.dropped),
            "rows_by_status": statuses,
            "lost": len(lost),
            "duplicated": len(duplicated),
            "lost_detail": lost[:10],
            "duplicated_detail": duplicated[:10],
        }

    def partials(self) -> dict:
        health = json.loads(
            self.realm(
                "health",
                "--json",
                "--check",
                "database",
                "--check",
                "queue",
                "--check",
                "checkpoints",
                check=False,
            ).stdout
        )
        cp = health["checks"].get("checkpoints", {})
        listed_cp = sum(len(cp.get(k, [])) for k in ("not_in_ledger", "missing_folders", "partial_folders"))
        local = json.loads(self.realm("vault", "verify", "--zone", "local", "--json", check=False).stdout)
        backup = json.loads(self.realm("vault", "verify", "--zone", "backup", "--json", check=False).stdout)

        def bad(v: dict) -> int:
            return len(v["corrupt"]) + len(v["missing"])

        staging = [p.name for p in self.zone.iterdir() if p.name.startswith(".partial-")]
        return {
            "partial_checkpoints_listed": listed_cp + bad(local),
            "partial_copies_listed": bad(backup),
            "copies_verified": {"local": len(local["verified"]), "backup": len(backup["verified"])},
            "health_problems": health["problems"],
            "unlisted_staging_left_in_zone": len(staging),  # resumable leftovers, never listed
        }


def outcome(exc: requests.RequestException) -> str:
    """refused: nothing listened (the server was down); cut: the answer broke off mid-way (killed)."""
    if isinstance(exc, requests.ConnectionError) and "refused" in str(exc).lower():
        return "refused"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        return "cut"
    return type(exc).__name__


def restart_delays(logs: list[Path]) -> dict[str, list[int]]:
    """Per service, the guardian's wait before each restart after a kill -9, in order (0: the child
    had run STABLE_S, a crash rather than a crash loop; else its backoff)."""
    found: dict[str, list[int]] = {}
    for path in logs:
        text = path.read_text(errors="replace")
        for m in re.finditer(r"(\w+) crashed with exit code -9; restart in (\d+)s", text):
            found.setdefault(m.group(1), []).append(int(m.group(2)))
    return found


def stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    s = sorted(values)
    return {
        "n": len(s),
        "median": round(statistics.median(s), 3),
        "p95": round(s[max(0, math.ceil(0.95 * len(s)) - 1)], 3),
        "max": round(s[-1], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kill-budget-s", type=float, default=480.0, help="stop killing after this long")
    ap.add_argument("--keep", action="store_true", help="keep the home (printed) for a look")
    args = ap.parse_args()

    t_start = time.monotonic()
    soak = Soak(Path(tempfile.mkdtemp(prefix="soak-bench-")), args.seed)
    soak.setup()
    threads = []
    try:
        feeder = threading.Thread(target=soak.feeder, daemon=True)
        feeder.start()
        # The Oracle's alias: the first checkpoint, kept by retention because an alias names it.
        wait_until(lambda: any((soak.home / "models").glob("checkpoint-*")), 300, "a first checkpoint")
        first = sorted((soak.home / "models").glob("checkpoint-*"))[0].name
        soak.realm("vault", "alias", "set", "soak", first.split("-")[1], "--reason", "soak bench")
        threads = [threading.Thread(target=f, daemon=True) for f in (soak.pusher, soak.streamer)]
        for t in threads:
            t.start()
        results = []
        t_kills = time.monotonic()
        for name, want in soak.schedule(args.kills):
            if time.monotonic() - t_kills > args.kill_budget_s:
                break
            results.append(soak.kill(name, want))
        kills_s = time.monotonic() - t_kills
        soak.stop.set()
        feeder.join(30)
        for t in threads:
            t.join(150)
        drained = soak.drain(300)
        soak.realm("down", timeout=300)
        quests = soak.quests()
        partials = soak.partials()
        # Oldest rotation first (guardian.log.2, .1, then guardian.log), so the lines stay in order.
        base = soak.home / "logs" / "guardian.log"
        rotated = [base.with_name(f"guardian.log.{n}") for n in range(9, 0, -1)]
        delays = restart_delays([p for p in (*rotated, base) if p.is_file()])
        for name in TARGETS:  # each service's kills are sequential: the nth kill, the nth restart
            for r, d in zip((r for r in results if r["service"] == name), delays.get(name, []), strict=False):
                r["guardian_wait_s"] = d
    except BaseException:
        soak.stop.set()
        soak.realm("down", timeout=300, check=False)
        raise
    finally:
        if not args.keep:
            shutil.rmtree(soak.base, ignore_errors=True)
    by_service = {
        name: {
            "kills": sum(1 for r in results if r["service"] == name),
            "at_moment": sum(1 for r in results if r["service"] == name and r["moment"] != "random"),
            "latency_s": stats([r["latency_s"] for r in results if r["service"] == name]),
        }
        for name in TARGETS
    }
    print(
        json.dumps(
            {
                "kills": len(results),
                "seed": args.seed,
                "by_service": by_service,
                "restart_latency_s": stats([r["latency_s"] for r in results]),
                # By the guardian's wait before the restart: 0 s is the restart machinery alone.
                "restart_latency_s_by_guardian_wait": {
                    f"{w}s": stats([r["latency_s"] for r in results if r.get("guardian_wait_s") == w])
                    for w in sorted({r.get("guardian_wait_s", -1) for r in results})
                },
                "quests": quests,
                **partials,
                "drained": drained,
                "load": soak.counters,
                "kill_phase_s": round(kills_s, 1),
                "wall_s": round(time.monotonic() - t_start, 1),
                "home": str(soak.base) if args.keep else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
