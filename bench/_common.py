"""What the benches and the tests both need: free ports, waiting, a home config, quests, a Tavern process.

It lives outside `tests/` so a bench runs without the test suite (bench/ never imports tests/); the
tests take these from here through `tests/helpers.py`, so each helper has one definition.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
REALM_PY = REPO / "realm.py"

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold in time. An AssertionError, so a test fails (not errors) on it."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    message: str,
    interval: float = 0.05,
    proc: subprocess.Popen | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; raise WaitTimeout naming
    `message` after `timeout` seconds, or at once (with its output) if `proc` exits first. The one
    way tests and benches wait on another process."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise WaitTimeout(f"the process exited ({proc.returncode}) while waiting for {message}:\n{out}")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports that were free just now (all sockets held until all are chosen,
    so the kernel cannot hand out one port twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def write_home_config(home: Path, overrides: dict) -> dict:
    """The repo's config with dotted-key overrides ("training.eval_every": 100), as <home>/realm.yaml."""
    data = yaml.safe_load((REPO / "configs" / "realm.yaml").read_text())
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    (home / "realm.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return data


def circled(n: int) -> str:
    return "".join("⓪①"[int(b)] for b in bin(n)[2:])


def bin_chats(n: int, seed: int = 0, bits: int = 6) -> list[dict]:
    """Distinct BIN-like addition chats ("Compute: add(①⓪, ①①)" -> "①⓪①")."""
    rng = random.Random(seed)
    pairs = rng.sample([(a, b) for a in range(2**bits) for b in range(2**bits)], n)
    return [
        {
            "messages": [
                {"role": "user", "content": f"Compute: add({circled(a)}, {circled(b)})"},
                {"role": "assistant", "content": circled(a + b)},
            ]
        }
        for a, b in pairs
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def enqueue(home: Path, name: str, records: list[dict]) -> int:
    """Put a quest of chats straight into the queue (as intake would after its checks); its id."""
    from arena.queue import QuestQueue
    from sentinels.realm import Realm

    realm = Realm.open(home)
    realm.init()
    src = write_jsonl(home / f".{name}.tmp", records)
    quest = QuestQueue(realm.home, realm.store, realm.events).enqueue(
        src, name=name, spec="chat_sft_v1", example_count=len(records)
    )
    realm.store.close()
    return quest.id


def clean_env(extra: dict | None = None) -> dict[str, str]:
    """This process's environment for a child `realm` command: REALM_HOME removed, so only --home counts."""
    env = {**os.environ, **(extra or {})}
    env.pop("REALM_HOME", None)
    return env


def wait_health(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> dict:
    """The JSON of GET /health on a loopback port, once it answers; fails early if `proc` exits."""

    def health() -> dict | None:
        try:
            return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
        except requests.RequestException:
            return None

    return wait_until(health, timeout, f"/health on port {port}", interval=0.1, proc=proc)


def start_tavern(home: Path, port: int) -> subprocess.Popen:
    """`realm tavern` on a home and port, returned once /health answers."""
    proc = subprocess.Popen(
        [sys.executable, str(REALM_PY), "tavern", "--home", str(home), "--port", str(port)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_health(port, proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM, then the exit code (raises subprocess.TimeoutExpired if it does not exit in time)."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)
