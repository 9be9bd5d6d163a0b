"""Helpers the test modules share: running the real CLI, isolated homes, quests, reading the vault.

Helpers the benches need too (free ports, `wait_until`, BIN-like chats, a Tavern process) are defined
in `bench/_common.py` and re-exported here, so each has one definition and bench/ never imports tests/.
Fixtures stay in `conftest.py`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import yaml

from bench._common import (
    REALM_PY,
    REPO,
    WaitTimeout,
    bin_chats,
    circled,
    clean_env,
    enqueue,
    free_port,
    free_ports,
    start_tavern,
    stop,
    wait_health,
    wait_until,
    write_home_config,
    write_jsonl,
)

__all__ = [
    "LEARNING_BUDGET_MIN",
    "LEARNING_TIMEOUT_S",
    "REALM_PY",
    "REPO",
    "WaitTimeout",
    "arena",
    "assert_ledger_matches_folders",
    "bin_chats",
    "checkpoint_dirs",
    "circled",
    "clean_env",
    "command_done",
    "enqueue",
    "events",
    "free_port",
    "free_ports",
    "isolated_config",
    "last_event_id",
    "query",
    "run_realm",
    "send_command",
    "start_arena",
    "start_tavern",
    "stop",
    "tiny_config",
    "wait_health",
    "wait_until",
    "write_home_config",
    "write_jsonl",
]

# The learning test (tests/test_learning.py) gives bench/learning.py this many minutes to level BIN up.
# The bench can run past its budget by its stop grace (it waits up to 120 s for the daemon to
# checkpoint and exit) plus start-up, so the test's own timeout is derived from the budget, and the
# global pytest timeout (pyproject.toml) must exceed the budget: conftest.py refuses to run otherwise.
LEARNING_BUDGET_MIN = 12
LEARNING_TIMEOUT_S = LEARNING_BUDGET_MIN * 60 + 120 + 180


def run_realm(*args: str, home: Path | None = None, timeout: float = 600, check: bool = False, env=None):
    """Run the real CLI in a subprocess, as a user would."""
    argv = [sys.executable, str(REALM_PY), *args]
    if home is not None:
        argv += ["--home", str(home)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=clean_env(env), cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"realm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def isolated_config(home: Path, overrides: dict | None = None) -> dict:
    """A home config for `realm up`: every port in the `ports` section free (nothing on 8888 or any
    other fixed port), and no idle-quest training, unless `overrides` say otherwise."""
    ports = yaml.safe_load((REPO / "configs" / "realm.yaml").read_text())["ports"]
    chosen = dict(zip(ports, free_ports(len(ports)), strict=True))
    return write_home_config(
        home,
        {**{f"ports.{k}": v for k, v in chosen.items()}, "guild.auto_generate": False, **(overrides or {})},
    )


def tiny_config(home: Path, **training) -> None:
    """A realm.yaml in the home with a small, fast training setup and no idle quests."""
    cfg = {
        "batch_size": 2,
        "max_length": 128,
        "save_steps": 15,
        "keep_last": 3,
        "eval_every": 1000,
        "warmup_steps": 5,
        "event_interval_s": 0.0,
        "val_fraction": 0.05,
        "threads": 1,
        **training,
    }
    # No thinning tiers: a run that crosses a clock hour would otherwise keep one extra checkpoint.
    vault = {"keep_hourly_h": 0, "keep_daily_d": 0, "keep_weekly": False}
    (home / "realm.yaml").write_text(
        yaml.safe_dump({"training": cfg, "guild": {"auto_generate": False}, "vault": vault})
    )


def events(home: Path, kind: str | None = None, since: int = 0) -> list[dict]:
    """Events after id `since`, oldest first, as {"kind", "ts", **payload, "event_id"}. Slice by id,
    never by timestamp: ids increase strictly across processes, clocks do not."""
    from vault.events import EventLog
    from vault.store import Store

    store = Store.for_home(home)
    try:
        return [
            {"kind": e.kind, "ts": e.ts, **e.payload, "event_id": e.id}
            for e in EventLog(store).since(since, kinds=[kind] if kind else None, limit=1_000_000)
        ]
    finally:
        store.close()


def last_event_id(home: Path) -> int:
    from vault.events import EventLog
    from vault.store import Store

    store = Store.for_home(home)
    try:
        return EventLog(store).last_id()
    finally:
        store.close()


def query(home: Path, sql: str, params=()) -> list[dict]:
    from vault.store import Store

    store = Store.for_home(home)
    try:
        return store.query(sql, params)
    finally:
        store.close()


def send_command(home: Path, action: str) -> int:
    """A battle command through the same path as `realm pause` etc., without a CLI process; its id."""
    from arena import control
    from vault.events import EventLog
    from vault.store import Store

    store = Store.for_home(home)
    try:
        return control.send(store, EventLog(store), action)
    finally:
        store.close()


def command_done(home: Path, command_id: int) -> bool:
    """Whether the trainer has taken that command."""
    rows = query(home, "SELECT status FROM commands WHERE id = ?", (command_id,))
    return bool(rows) and rows[0]["status"] == "done"


def checkpoint_dirs(home: Path) -> list[str]:
    return sorted((p.name for p in (home / "models").iterdir()), key=lambda n: (len(n), n))


def arena(home: Path, *args: str, env: dict | None = None, timeout: float = 300):
    return run_realm("arena", *args, home=home, env=env, timeout=timeout)


def start_arena(home: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REALM_PY), "arena", *args, "--home", str(home)],
        cwd=REPO,
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def assert_ledger_matches_folders(home: Path) -> None:
    folders = {p.name for p in (home / "models").iterdir()}
    assert not [n for n in folders if n.startswith((".tmp-", ".trash-"))], folders
    for name in folders:
        assert (home / "models" / name / ".ledger.json").is_file(), name
    live = {r["name"] for r in query(home, "SELECT name FROM checkpoints WHERE deleted = 0")}
    assert live == folders


def dio_tokenizer():
    """DIO's byte-level tokenizer (no download), for tests that build their own tiny HF models."""
    from arena.hero import HeroSpec, byte_tokenizer

    return byte_tokenizer(HeroSpec.read(REPO / "configs" / "heroes" / "dio.yaml").tokenizer)


def tiny_qwen3(tok, *, seed: int = 0, max_positions: int = 512, **config):
    """A tiny Qwen3 causal LM (hidden 32, 2 layers, 4 heads of 8, 2 KV heads) over `tok`'s vocabulary,
    initialised from `seed`; `config` overrides any Qwen3Config field."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        **{
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "max_position_embeddings": max_positions,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "bos_token_id": None,
            **config,
        }
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(cfg)


def save_tiny_hf(folder: Path, *, seed: int = 0, max_positions: int = 512) -> Path:
    """A tiny Qwen3 model folder with DIO's tokenizer, saved as any HF user would (save_pretrained)."""
    tok = dio_tokenizer()
    tiny_qwen3(tok, seed=seed, max_positions=max_positions).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@contextlib.contextmanager
def vault_server(home: Path):
    """The Vault API for `home` on a free loopback port (a real werkzeug server in a thread), as
    another host reaches it: yields its URL, and shuts it down and closes the keeper after."""
    import threading

    from werkzeug.serving import make_server

    from sentinels.realm import Realm
    from vault.server import create_app

    keeper = Realm.open(home)
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(keeper, bind="127.0.0.1"), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        keeper.store.close()
