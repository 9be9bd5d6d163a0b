"""The Oracle end to end: the official `openai` client against a real `realm oracle` on loopback,
serving the checkpoints of one real short training run (the session's `trained_home`).

Two servers per module: `oracle` with the default config (on a copy of the trained home whose
aliases the tests move), and `strict` with small limits (one checkpoint in memory, no waiting for
loads, a token for load/unload, tight caps) to show the loading and security rules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest
import requests

from bench.oracle import start_oracle
from tests.conftest import REPO, TRAINED_STEPS
from tests.helpers import free_port, run_realm, stop, vault_server, wait_until, write_home_config

TOKEN = "s3cret-oracle"


def _copy_home(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock", "logs"))
    return dst


def _names(home: Path) -> dict[int, str]:
    return {
        int(p.name.split("-")[1]): p.name
        for p in (home / "models").iterdir()
        if p.name.startswith("checkpoint-")
    }


def _set_alias(home: Path, name: str, step: int) -> None:
    """Move an alias through the vault's own functions, as `realm vault alias set` does."""
    from vault.ledger import Ledger
    from vault.store import Store

    store = Store.for_home(home)
    try:
        Ledger(store).set_alias(name, step, by="test", reason="test_oracle")
    finally:
        store.close()


class Server:
    def __init__(self, home: Path, port: int, proc: subprocess.Popen):
        self.home, self.port, self.proc = home, port, proc
        self.url = f"http://127.0.0.1:{port}"
        self.client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=120)

    def status(self) -> dict:
        return requests.get(f"{self.url}/oracle/status", timeout=30).json()


@pytest.fixture(scope="module")
def oracle(trained_home, tmp_path_factory):
    home = _copy_home(trained_home, tmp_path_factory.mktemp("oracle") / "home")
    port = free_port()
    proc = start_oracle(home, port, env={"REALM_LOG_CONSOLE": "0"})
    yield Server(home, port, proc)
    assert stop(proc) == 0


@pytest.fixture(scope="module")
def strict(trained_home, tmp_path_factory):
    home = _copy_home(trained_home, tmp_path_factory.mktemp("strict") / "home")
    # A hero with a base model (any HF folder; here a copy of the first checkpoint) serves it as dio@base.
    base = home.parent / "Tiny-Base"
    shutil.copytree(home / "models" / _names(home)[TRAINED_STEPS[0]], base)
    write_home_config(
        home,
        {
            **yaml_training(home),
            "hero.base_model": str(base),
            "oracle.max_loaded": 1,
            "oracle.load_wait_s": 0.0,
            "oracle.open_on_loopback": False,
            "oracle.token": TOKEN,
            "oracle.max_tokens": 16,
            "oracle.max_prompt_tokens": 64,
        },
    )
    port = free_port()
    proc = start_oracle(home, port, env={"REALM_LOG_CONSOLE": "0"})
    yield Server(home, port, proc)
    assert stop(proc) == 0


def yaml_training(home: Path) -> dict:
    """The trained home's own training settings, kept when its realm.yaml is rewritten."""
    import yaml

    data = yaml.safe_load((home / "realm.yaml").read_text())
    return {f"training.{k}": v for k, v in data["training"].items()} | {"guild.auto_generate": False}


def chat(server: Server, model: str, text: str = "Compute: add(①⓪①, ①①)", **kw):
    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0)
    return server.client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )


# ---- the process ------------------------------------------------------------------------------------
def test_the_oracle_never_imports_the_trainer(trained_home):
    code = (
        "import sys, json\n"
        "from sentinels.realm import Realm\n"
        "from tavern.oracle.cli import build_app\n"
        f"app = build_app(Realm.open({str(trained_home)!r}), '127.0.0.1')\n"
        "import tavern.oracle.server\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('arena', 'guild')))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    mods = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "arena.inference" in mods  # the shared loading and generation code is used...
    assert "arena.trainer" not in mods and "guild.guild" not in mods  # ...and nothing of the trainer


def test_one_oracle_per_home(oracle):
    second = run_realm("oracle", "--port", str(free_port()), home=oracle.home, timeout=120)
    assert second.returncode != 0 and "already runs" in second.stderr


# ---- the protocol -----------------------------------------------------------------------------------
def test_models_lists_every_checkpoint_and_alias(oracle):
    _set_alias(oracle.home, "champion", TRAINED_STEPS[1])
    listed = {m.id: m for m in oracle.client.models.list().data}
    names = _names(oracle.home)
    assert set(names.values()) <= set(listed)
    assert {"dio@latest", "dio@champion"} <= set(listed)
    assert listed["dio@champion"].model_extra["checkpoint"] == names[TRAINED_STEPS[1]]
    assert listed["dio@latest"].model_extra["checkpoint"] == names[TRAINED_STEPS[-1]]
    one = oracle.client.models.retrieve(names[TRAINED_STEPS[0]])
    assert one.model_extra["step"] == TRAINED_STEPS[0]


def test_chat_without_and_with_streaming_with_usage(oracle):
    names = _names(oracle.home)
    plain = chat(oracle, "dio@latest")
    assert plain.model == names[TRAINED_STEPS[-1]]  # the concrete checkpoint, not the alias
    assert plain.object == "chat.completion" and plain.choices[0].message.role == "assistant"
    assert plain.choices[0].finish_reason in ("stop", "length")
    assert plain.usage.prompt_tokens > 0 and plain.usage.completion_tokens >= 1

    stream = chat(oracle, "dio@latest", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.model == names[TRAINED_STEPS[-1]] for c in chunks)
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in body)
    assert text == plain.choices[0].message.content  # greedy: the same answer either way
    assert body[-1].choices[0].finish_reason == plain.choices[0].finish_reason
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_sse_wire_format_ends_with_done(oracle):
    resp = requests.post(
        f"{oracle.url}/v1/chat/completions",
        json={
            "model": "dio@latest",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
            "stream": True,
            "ignore_eos": True,
        },
        stream=True,
        timeout=60,
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in resp.text.split("\n\n") if e and not e.startswith(":")]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    finals = [json.loads(e[6:]) for e in events[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in finals][-1] == "length"
    assert sum(1 for c in finals if c["choices"][0]["delta"].get("content")) <= 3


def test_completions_with_and_without_stream(oracle):
    names = _names(oracle.home)
    plain = oracle.client.completions.create(
        model=f"dio@step-{TRAINED_STEPS[0]}",
        prompt=["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "ab"],
        max_tokens=5,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert plain.model == names[TRAINED_STEPS[0]]
    assert [c.index for c in plain.choices] == [0, 1]
    assert all(c.finish_reason == "length" for c in plain.choices)
    assert plain.usage.completion_tokens == 10
    chunks = list(
        oracle.client.completions.create(
            model=f"dio@step-{TRAINED_STEPS[0]}",
            prompt="ab",
            max_tokens=5,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[1].text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_an_unknown_id_is_a_404_listing_valid_ids(oracle):
    with pytest.raises(openai.NotFoundError) as err:
        chat(oracle, "dio@no-such-alias")
    body = err.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model" and body["type"]
    assert "dio@latest" in body["message"] and _names(oracle.home)[TRAINED_STEPS[0]] in body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        chat(oracle, "dio@latest", max_tokens=0)
    assert bad.value.body["param"] == "max_tokens"


def test_two_checkpoints_by_alias_answer_differently(oracle):
    _set_alias(oracle.home, "early", TRAINED_STEPS[0])
    _set_alias(oracle.home, "late", TRAINED_STEPS[-1])
    names = _names(oracle.home)
    a = chat(oracle, "dio@early", logprobs=True, top_logprobs=3)
    b = chat(oracle, "dio@late", logprobs=True, top_logprobs=3)
    assert (a.model, b.model) == (names[TRAINED_STEPS[0]], names[TRAINED_STEPS[-1]])
    la = [t.logprob for t in a.choices[0].logprobs.content]
    lb = [t.logprob for t in b.choices[0].logprobs.content]
    assert la and lb and len(a.choices[0].logprobs.content[0].top_logprobs) == 3
    # Ten training steps apart on greedy decoding: the answers, or at least their probabilities, differ.
    assert a.choices[0].message.content != b.choices[0].message.content or la != lb


def test_moving_champion_changes_the_next_answers_model(oracle):
    names = _names(oracle.home)
    _set_alias(oracle.home, "champion", TRAINED_STEPS[0])
    assert chat(oracle, "dio@champion").model == names[TRAINED_STEPS[0]]
    _set_alias(oracle.home, "champion", TRAINED_STEPS[-1])
    assert chat(oracle, "dio@champion").model == names[TRAINED_STEPS[-1]]
    assert chat(oracle, "champion").model == names[TRAINED_STEPS[-1]]  # a bare alias too


def test_a_client_that_disconnects_mid_stream_frees_the_server(oracle):
    before = oracle.status()["generation"]
    stream = chat(oracle, "dio@latest", stream=True, max_tokens=512, extra_body={"ignore_eos": True})
    got = []
    for chunk in stream:
        got.append(chunk)
        if len(got) == 4:
            break
    stream.close()  # the client goes away mid-answer

    def freed():
        st = oracle.status()["generation"]
        return st["active"] == 0 and st["batches"] > before["batches"] and st

    st = wait_until(freed, 60, "the cancelled generation to end")
    assert st["recent"][0]["finish"] == "cancelled" and st["recent"][0]["tokens"] < 512
    assert st["cancelled"] == before["cancelled"] + 1
    assert chat(oracle, "dio@latest", max_tokens=4).choices[0].finish_reason in ("stop", "length")


def test_concurrent_requests_share_one_batch_and_match_one_by_one(oracle):
    prompts = ["Compute: add(①, ①)", "hi", "a longer prompt than the others, to force left padding"]
    alone = [chat(oracle, "dio@latest", p, max_tokens=6).choices[0].message.content for p in prompts]
    # Hold the engine with a long answer, queue the three, then let the long one go: they run together.
    blocker = chat(oracle, "dio@latest", stream=True, max_tokens=512, extra_body={"ignore_eos": True})
    running = iter(blocker)
    next(running)
    next(running)  # a content chunk: the engine is generating it
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        answers[i] = chat(oracle, "dio@latest", prompts[i], max_tokens=6).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: oracle.status()["generation"]["queued"] == 3, 60, "three queued requests")
    blocker.close()
    for t in threads:
        t.join(120)
    assert [answers[i] for i in range(3)] == alone
    assert oracle.status()["generation"]["recent"][0]["batch"] == 3


def test_stop_sequences_seed_and_the_max_tokens_cap(oracle):
    full = (
        chat(oracle, "dio@latest", max_tokens=12, extra_body={"ignore_eos": True}).choices[0].message.content
    )
    assert len(full) >= 3
    cut = chat(oracle, "dio@latest", max_tokens=12, stop=[full[2:4]], extra_body={"ignore_eos": True})
    assert full.startswith(cut.choices[0].message.content) and full[2:4] not in cut.choices[0].message.content
    assert cut.choices[0].finish_reason == "stop"
    sampled = [
        chat(oracle, "dio@latest", temperature=1.0, top_p=0.9, seed=7, max_tokens=10)
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]


def test_think_budget_forces_the_close_tag(oracle):
    prompt = "<|im_start|>user\nthink first<|im_end|>\n<|im_start|>assistant\n<think>"
    for budget in (0, 3):
        r = oracle.client.completions.create(
            model="dio@latest",
            prompt=prompt,
            max_tokens=8,
            temperature=0,
            logprobs=1,
            extra_body={"max_think_tokens": budget, "ignore_eos": True},
        )
        tokens = r.choices[0].logprobs.tokens
        assert tokens[budget] == "</think>", tokens  # exactly `budget` thinking tokens, then the close
        assert "</think>" not in tokens[:budget] and len(tokens) == 8  # and the answer follows


# ---- loading ----------------------------------------------------------------------------------------
def test_load_unload_status_and_the_original_endpoints(oracle):
    names = _names(oracle.home)
    r = requests.post(
        f"{oracle.url}/oracle/load", json={"model": f"dio@step-{TRAINED_STEPS[0]}"}, timeout=120
    )
    assert r.status_code == 200 and r.json()["model"] == names[TRAINED_STEPS[0]]
    st = oracle.status()
    entry = next(e for e in st["loaded"] if e["model"] == names[TRAINED_STEPS[0]])
    assert entry["memory_bytes"] > 1_000_000 and entry["last_used"] > 0 and st["memory"]["rss_bytes"] > 0
    # Checkpoints of one run share an architecture: after the first build, loads copy or swap weights.
    assert st["loads"]["copy"] + st["loads"]["swap"] >= 1
    r = requests.post(f"{oracle.url}/oracle/unload", json={"model": names[TRAINED_STEPS[0]]}, timeout=30)
    assert r.json() == {"model": names[TRAINED_STEPS[0]], "unloaded": True}
    assert names[TRAINED_STEPS[0]] not in {e["model"] for e in oracle.status()["loaded"]}

    path = oracle.home / "models" / names[TRAINED_STEPS[1]]
    r = requests.post(f"{oracle.url}/models/reload", json={"model_path": str(path)}, timeout=120)
    assert r.status_code == 200 and r.json()["model_name"] == names[TRAINED_STEPS[1]]
    info = requests.get(f"{oracle.url}/models/info", timeout=30).json()
    assert info["loaded"] is True and info["model_name"] == names[TRAINED_STEPS[1]]
    outside = oracle.home.parent / "elsewhere" / names[TRAINED_STEPS[1]]
    shutil.copytree(path, outside)
    r = requests.post(f"{oracle.url}/models/reload", json={"model_path": str(outside)}, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["param"] == "model_path"


def test_a_loading_checkpoint_gets_503_retry_after_or_loading_comments(strict):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    first, second = (f"dio@step-{s}" for s in TRAINED_STEPS[:2])
    r = requests.post(f"{strict.url}/v1/chat/completions", json={**body, "model": first}, timeout=60)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "model_loading"
    wait_until(lambda: strict.status()["loaded"], 60, "the load")
    assert requests.post(f"{strict.url}/v1/chat/completions", json={**body, "model": first}, timeout=60).ok

    r = requests.post(
        f"{strict.url}/v1/chat/completions", json={**body, "model": second, "stream": True}, timeout=60
    )
    assert r.text.startswith(": loading\n\n") and r.text.rstrip().endswith("data: [DONE]")
    # max_loaded 1: the second checkpoint took the first one's model and had its weights swapped in.
    st = strict.status()
    assert [e["asset_id"] for e in st["loaded"]] == [f"checkpoint_{TRAINED_STEPS[1]}"] and st["loads"][
        "swap"
    ] >= 1


def test_security_token_and_caps(strict):
    assert (
        requests.post(f"{strict.url}/oracle/load", json={"model": "dio@latest"}, timeout=30).status_code
        == 401
    )
    r = requests.post(
        f"{strict.url}/oracle/load",
        json={"model": "dio@latest"},
        headers={"X-Realm-Token": TOKEN},
        timeout=120,
    )
    assert r.status_code == 200
    r = requests.post(
        f"{strict.url}/oracle/unload",
        json={"model": "dio@latest"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert r.json()["unloaded"] is True
    r = requests.post(f"{strict.url}/models/reload", json={"model_path": str(strict.home)}, timeout=30)
    assert r.status_code == 401
    # max_tokens is capped by oracle.max_tokens (16), a long prompt refused past oracle.max_prompt_tokens.
    r = requests.post(
        f"{strict.url}/oracle/load",
        json={"model": "dio@latest"},
        headers={"X-Realm-Token": TOKEN},
        timeout=120,
    )
    assert r.status_code == 200  # loaded, so the next requests need not wait (load_wait_s is 0 here)
    r = chat(strict, "dio@latest", max_tokens=10_000, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 16 and r.choices[0].finish_reason == "length"
    with pytest.raises(openai.BadRequestError) as err:
        chat(strict, "dio@latest", "x" * 200)
    assert err.value.body["code"] == "context_length_exceeded"


def test_keep_alive_zero_unloads_after_the_request(oracle):
    r = chat(oracle, f"dio@step-{TRAINED_STEPS[1]}", max_tokens=2, extra_body={"keep_alive": 0})
    wait_until(lambda: r.model not in {e["model"] for e in oracle.status()["loaded"]}, 30, "the unload")


# ---- scale past one machine -------------------------------------------------------------------------
def test_a_remote_oracle_resolves_ids_through_the_vault_api(trained_copy, tmp_path):
    """`realm oracle --vault URL` on a home without a realm database: ids, aliases and checkpoint
    folders all come through the VaultKeeper API (a real HTTP server on loopback)."""
    _set_alias(trained_copy, "champion", TRAINED_STEPS[0])
    remote = tmp_path / "gpu-box"
    remote.mkdir()
    port = free_port()
    env = {"REALM_LOG_CONSOLE": "0", "REALM_VAULT_CACHE": str(tmp_path / "cache")}
    with vault_server(trained_copy) as vault_url:
        proc = start_oracle(remote, port, "--vault", vault_url, env=env)
        try:
            server = Server(remote, port, proc)
            names = _names(trained_copy)
            assert {"dio@champion", names[TRAINED_STEPS[0]]} <= {
                m.id for m in server.client.models.list().data
            }
            assert chat(server, "dio@champion", max_tokens=3).model == names[TRAINED_STEPS[0]]
            with pytest.raises(openai.NotFoundError):
                chat(server, "dio@step-99999")
            assert not (remote / "realm.db").exists()  # it never opened a vault of its own
        finally:
            assert stop(proc) == 0


def test_the_base_model_is_served_as_dio_at_base(strict):
    assert "dio@base" in {m.id for m in strict.client.models.list().data}
    r = requests.post(
        f"{strict.url}/oracle/load", json={"model": "dio@base"}, headers={"X-Realm-Token": TOKEN}, timeout=120
    )
    assert r.status_code == 200 and r.json()["model"] == "Tiny-Base"
    assert chat(strict, "dio@base", max_tokens=2).model == "Tiny-Base"
