"""The Oracle serves LoRA adapter checkpoints the way vLLM serves LoRAs: adapters of one base share
ONE loaded base model, and each request runs with its own adapter selected.

One real home per module: a tiny Qwen3-architecture base folder (built from a config, saved with
`save_pretrained`, the DIO byte tokenizer beside it), two adapter checkpoints of it made with peft
(different seeds, so they answer differently) and one full checkpoint, all saved through the arena's
CheckpointManager (so the vault lands them and `dio@step-N` resolves them), and a real `realm oracle`
on a free loopback port that the official `openai` client talks to. Each answer is checked against
plain peft / transformers greedy decoding in this process: the same tokens.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import openai
import pytest
import requests
import torch

from bench.oracle import start_oracle
from tests.conftest import REPO
from tests.helpers import free_port, stop, tiny_qwen3, vault_server, wait_until, write_home_config

MAX_TOKENS = 8
PROMPT = "Compute: add(①⓪, ①①)"
STEPS = {"a": 10, "b": 20, "full": 30}  # adapter a, adapter b, a full checkpoint
# A long answer that holds the engine while other requests queue: ~5 s for this tiny model on one
# core (512 tokens would take half a second, too short to be sure the others are queued by then).
BLOCKER_TOKENS = 4096


def _tokenizer():
    from arena.hero import HeroSpec, byte_tokenizer

    return byte_tokenizer(HeroSpec.read(REPO / "configs" / "heroes" / "dio.yaml").tokenizer)


def _tiny_qwen3(tok, seed: int):
    # A wide init gives peaked logits: greedy decoding in two processes (two thread counts, so
    # two summation orders) then picks the same token, where near-uniform logits could tie.
    return tiny_qwen3(
        tok,
        seed=seed,
        max_positions=BLOCKER_TOKENS + 512,
        initializer_range=0.5,
        tie_word_embeddings=True,
    ).eval()


def _adapter(base_dir: Path, seed: int):
    """A peft LoRA on the base, randomly initialised (B too) so each seed answers its own way."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, cfg)


def _hero(base_dir: Path) -> dict:
    return {
        "preset": None,
        "profile": "lora",
        "base_model": str(base_dir),
        "base_sha256": None,
        "trainable_params": None,
        "total_params": None,
    }


class Served:
    def __init__(self, home: Path, base: Path, checkpoints: dict[str, Path], port: int, proc):
        self.home, self.base, self.checkpoints, self.port, self.proc = home, base, checkpoints, port, proc
        self.url = f"http://127.0.0.1:{port}"
        self.client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=120)
        self.tok = _tokenizer()
        self._refs: dict[tuple[str, str], str] = {}

    def status(self) -> dict:
        return requests.get(f"{self.url}/oracle/status", timeout=30).json()

    def chat(self, which: str, prompt: str = PROMPT, **kw):
        return self.client.chat.completions.create(
            model="dio@base" if which == "base" else f"dio@step-{STEPS[which]}",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=kw.pop("max_tokens", MAX_TOKENS),
            temperature=0,
            **kw,
        )

    def reference(self, which: str, prompt: str = PROMPT) -> str:
        """What plain peft (adapters) or plain transformers (the full checkpoint) answers, greedy."""
        if (which, prompt) not in self._refs:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            from arena.inference import chat_prompt_ids

            if which in ("full", "base"):
                path = self.checkpoints["full"] if which == "full" else self.base
                model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            else:
                base = AutoModelForCausalLM.from_pretrained(self.base, dtype=torch.float32)
                model = PeftModel.from_pretrained(base, self.checkpoints[which])
            model.eval()
            ids = chat_prompt_ids(self.tok, [{"role": "user", "content": prompt}])
            with torch.inference_mode():
                out = model.generate(
                    input_ids=torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=MAX_TOKENS,
                    do_sample=False,
                    pad_token_id=self.tok.pad_token_id,
                    eos_token_id=self.tok.eos_token_id,
                )
            self._refs[(which, prompt)] = self.tok.decode(out[0, len(ids) :], skip_special_tokens=True)
        return self._refs[(which, prompt)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from arena.checkpoints import CheckpointManager
    from sentinels.realm import Realm

    root = tmp_path_factory.mktemp("adapters")
    home = root / "home"
    home.mkdir()
    write_home_config(
        home,
        {
            "oracle.max_loaded": 4,
            "hero.base_model": str(root / "Tiny-Qwen3"),  # dio@base
            "oracle.threads": 1,
            "oracle.max_tokens": BLOCKER_TOKENS,
            "guild.auto_generate": False,
        },
    )
    tok = _tokenizer()
    base = root / "Tiny-Qwen3"
    _tiny_qwen3(tok, seed=0).save_pretrained(base)
    tok.save_pretrained(base)

    realm = Realm.open(home)
    realm.init()
    checkpoints: dict[str, Path] = {}
    try:
        manager = CheckpointManager(realm.home.models, realm.store, keep_last=10)
        for which, seed in (("a", 1), ("b", 2)):
            cp = manager.save(
                model=_adapter(base, seed),
                tokenizer=tok,
                loop_state={"step": STEPS[which]},
                tensors_state=None,
                ledger={"train_loss": 1.0},
                hero=_hero(base),
            )
            assert (cp.path / "adapter_model.safetensors").is_file()
            assert not (cp.path / "model.safetensors").exists()
            checkpoints[which] = cp.path
        full = manager.save(
            model=_tiny_qwen3(tok, seed=3),
            tokenizer=tok,
            loop_state={"step": STEPS["full"]},
            tensors_state=None,
            ledger={"train_loss": 1.0},
        )
        checkpoints["full"] = full.path
    finally:
        realm.store.close()
    port = free_port()
    proc = start_oracle(home, port, env={"REALM_LOG_CONSOLE": "0"})
    yield Served(home, base, checkpoints, port, proc)
    assert stop(proc) == 0


def test_two_adapters_share_one_loaded_base_and_answer_as_plain_peft(served):
    a, b = served.chat("a"), served.chat("b")
    assert (a.model, b.model) == (served.checkpoints["a"].name, served.checkpoints["b"].name)
    assert a.choices[0].message.content == served.reference("a")
    assert b.choices[0].message.content == served.reference("b")
    assert served.reference("a") != served.reference("b")  # two adapters, two answers: no mix-up hides
    # A second round runs on what is loaded: nothing is loaded again.
    assert served.chat("a").choices[0].message.content == served.reference("a")

    st = served.status()
    assert st["loads"]["base"] == 1 and st["loads"]["adapter"] == 2  # the base was loaded ONCE
    assert st["loads"]["build"] == 0
    (base,) = st["bases"]
    assert Path(base["path"]) == served.base.resolve()
    assert base["adapters"] == sorted([served.checkpoints["a"].name, served.checkpoints["b"].name])
    adapters = [e for e in st["loaded"] if e["how"] == "adapter"]
    assert {e["model"] for e in adapters} == set(base["adapters"])
    assert all(e["base"] == base["path"] and 0 < e["memory_bytes"] < base["memory_bytes"] for e in adapters)
    # The base's memory counts once, however many adapters ride on it.
    assert st["memory"]["models_bytes"] == base["memory_bytes"] + sum(e["memory_bytes"] for e in adapters)


def test_a_full_checkpoint_is_served_alongside(served):
    before = served.status()["loads"]
    r = served.chat("full")
    assert r.model == served.checkpoints["full"].name
    assert r.choices[0].message.content == served.reference("full")
    st = served.status()
    assert st["loads"]["build"] == before["build"] + 1 and st["loads"]["base"] == before["base"]
    full = next(e for e in st["loaded"] if e["model"] == r.model)
    assert full["how"] == "build" and "base" not in full
    # The adapters are still there, still on their one base, and still answer as before.
    assert len(st["bases"]) == 1 and len(st["bases"][0]["adapters"]) == 2
    assert served.chat("b").choices[0].message.content == served.reference("b")
    assert served.status()["loads"]["base"] == before["base"]


def test_batches_never_mix_two_adapters_of_one_base(served):
    prompts = ["hi", "a longer prompt than the other one"]
    want = {(w, p): served.reference(w, p) for w in ("a", "b") for p in prompts}
    # Hold the engine with a long answer, queue two requests per adapter, then let them all go.
    blocker = served.chat("a", stream=True, max_tokens=BLOCKER_TOKENS, extra_body={"ignore_eos": True})
    running = iter(blocker)
    next(running)
    next(running)  # a content chunk: the engine is generating it
    got: dict[tuple[str, str], str] = {}

    def ask(which: str, prompt: str) -> None:
        got[(which, prompt)] = served.chat(which, prompt).choices[0].message.content

    threads = [threading.Thread(target=ask, args=key) for key in want]
    for t in threads:
        t.start()
    wait_until(lambda: served.status()["generation"]["queued"] == 4, 60, "four queued requests")
    blocker.close()
    for t in threads:
        t.join(120)
    assert got == want  # each answer is its own adapter's, not its batch neighbour's
    recent = served.status()["generation"]["recent"][:4]
    # One batch per adapter (two rows each), never one batch of four.
    assert [e["batch"] for e in recent] == [2, 2, 2, 2]
    assert {e["model"] for e in recent[:2]} != {e["model"] for e in recent[2:]}


def test_the_base_itself_is_served_on_the_base_its_adapters_share(served):
    """`dio@base` beside its adapters: no second copy of the base; it answers as the plain base
    (adapters off), and the adapters answer as before after it ran."""
    assert served.chat("a").choices[0].message.content == served.reference("a")
    before = served.status()["loads"]
    r = served.chat("base")
    assert r.model == served.base.name
    assert r.choices[0].message.content == served.reference("base")
    assert served.reference("base") not in (served.reference("a"), served.reference("b"))
    st = served.status()
    assert st["loads"] == before  # nothing was loaded: the base was already in memory
    (base,) = st["bases"]
    assert base["served_as"] == served.base.name and served.base.name not in base["adapters"]
    entry = next(e for e in st["loaded"] if e["model"] == served.base.name)
    assert entry["how"] == "base" and entry["memory_bytes"] == 0  # counted once, as the base
    assert served.chat("a").choices[0].message.content == served.reference("a")
    r = requests.post(f"{served.url}/oracle/unload", json={"model": "dio@base"}, timeout=30)
    assert r.json() == {"model": served.base.name, "unloaded": True}
    (base,) = served.status()["bases"]  # its adapters still use it
    assert base["served_as"] is None and len(base["adapters"]) == 2


def test_unloading_the_last_adapter_frees_the_base(served):
    names = {w: served.checkpoints[w].name for w in ("a", "b")}
    for w in ("a", "b"):
        r = requests.post(f"{served.url}/oracle/unload", json={"model": f"dio@step-{STEPS[w]}"}, timeout=30)
        assert r.json() == {"model": names[w], "unloaded": True}
    wait_until(lambda: served.status()["bases"] == [], 30, "the base to be freed")
    st = served.status()
    assert not {e["model"] for e in st["loaded"]} & set(names.values())
    before = st["loads"]["base"]
    # The original server's reload takes an adapter folder too; the base comes back, loaded once more.
    r = requests.post(
        f"{served.url}/models/reload", json={"model_path": str(served.checkpoints["b"])}, timeout=120
    )
    assert r.status_code == 200 and r.json()["model_name"] == names["b"]
    assert served.chat("b").choices[0].message.content == served.reference("b")
    assert served.status()["loads"]["base"] == before + 1


def test_an_adapter_unloaded_mid_generation_goes_when_it_ends(served):
    """In process, on the same folders: the manager keeps an unloaded adapter on its base until its
    last generation releases it, then takes it off (or frees the base when it was the last)."""
    from sentinels.config import OracleConfig
    from tavern.oracle.ids import Target
    from tavern.oracle.manager import ModelManager

    manager = ModelManager(OracleConfig(device="cpu", dtype="fp32", max_loaded=4), start_reaper=False)
    targets = {
        w: Target(
            w, f"checkpoint_{STEPS[w]}", served.checkpoints[w].name, served.checkpoints[w], "checkpoint"
        )
        for w in ("a", "b")
    }
    a = manager.acquire(targets["a"], wait_s=None)
    b = manager.load(targets["b"])
    peft_model = a.model
    assert b.model is peft_model and manager.loads["base"] == 1
    assert manager.unload(a.name)  # out of the table at once...
    assert a.adapter in peft_model.peft_config  # ...but its generation still has its adapter
    with a.selected() as model:
        assert model.active_adapter == a.adapter
    manager.release(a)
    wait_until(lambda: a.adapter not in peft_model.peft_config, 30, "the adapter to be deleted")
    assert b.adapter in peft_model.peft_config and manager.status()["bases"][0]["adapters"] == [b.name]
    assert manager.unload(b.name)
    assert manager.status()["bases"] == []
    manager.close()


def test_an_adapter_whose_base_is_gone_is_refused_by_name(served, tmp_path):
    import json
    import shutil

    from sentinels.config import OracleConfig
    from tavern.oracle.ids import Target
    from tavern.oracle.manager import ModelManager
    from tavern.oracle.protocol import OracleError

    copy = tmp_path / served.checkpoints["a"].name
    shutil.copytree(served.checkpoints["a"], copy)
    cfg_path = copy / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "no-such-base")
    cfg_path.write_text(json.dumps(cfg))
    (copy / ".ledger.json").unlink()
    manager = ModelManager(OracleConfig(device="cpu", dtype="fp32"), start_reaper=False)
    started = time.monotonic()
    with pytest.raises(OracleError) as err:
        manager.acquire(Target("x", "x", copy.name, copy, "checkpoint"), wait_s=60)
    assert time.monotonic() - started < 60
    assert "no-such-base" in str(err.value) and "base model" in str(err.value)
    manager.close()


def test_a_remote_oracle_fetches_an_adapters_base_through_the_vault(served, tmp_path):
    """`realm oracle --vault URL` on a host that cannot read the training host's disk
    ($REALM_VAULT_KEEPER_PATHS=0): the adapter AND the base model the vault says it needs come
    through the Vault API (a real server on loopback) into this host's cache, not from the path in
    the adapter's sidecar, and it answers exactly as plain peft does."""
    remote, cache = tmp_path / "gpu-box", tmp_path / "cache"
    remote.mkdir()
    port = free_port()
    env = {"REALM_LOG_CONSOLE": "0", "REALM_VAULT_CACHE": str(cache), "REALM_VAULT_KEEPER_PATHS": "0"}
    with vault_server(served.home) as vault_url:
        proc = start_oracle(remote, port, "--vault", vault_url, env=env)
        try:
            far = Served(remote, served.base, served.checkpoints, port, proc)
            r = far.chat("a")
            assert r.model == served.checkpoints["a"].name
            assert r.choices[0].message.content == served.reference("a")
            (base,) = far.status()["bases"]
            assert Path(base["path"]) == (cache / served.base.name).resolve()
            assert (cache / served.checkpoints["a"].name / "adapter_model.safetensors").is_file()
            assert not (remote / "realm.db").exists()
        finally:
            assert stop(proc) == 0
