"""Heroes from a real HF model folder under the full and LoRA memory profiles (issue #17).

The base is a tiny Qwen3-architecture model built from a config (hidden 32, 2 layers) with DIO's
byte-level tokenizer, saved with `save_pretrained` and used as `hero.base_model`: nothing is
downloaded. The real arena daemon trains it in-process (the same ArenaDaemon `realm arena` runs; a
subprocess per run would triple the time for no extra coverage), on BIN-like chats:
- full fine-tuning and LoRA each train, checkpoint, stop, resume, and their losses equal those of an
  uninterrupted run within 1e-4 (LoRA with dropout on, so the RNG state is part of what resumes);
- a LoRA checkpoint holds the adapter (adapter_config.json + adapter_model.safetensors, no
  model.safetensors) and a sidecar naming its base and the base's vault digest; it loads with plain
  `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), ckpt)` and generates;
- `export_merged` writes a model that plain `from_pretrained` loads, with base + adapter's logits;
- qlora and 8-bit optimizers on a CPU are refused with the reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
import torch
import yaml

from arena import adapters, attention
from arena.checkpoints import SavedTensors
from arena.hero import HeroError, make_hero
from arena.inference import load_checkpoint_hero, make_generate_fn
from sentinels.config import HeroConfig, LoraConfig, TrainingConfig
from sentinels.diskguard import checkpoint_need, tensor_bytes
from tests.helpers import REPO, bin_chats, enqueue, events, save_tiny_hf
from vault.identity import FileEntry, hash_file, list_files, tree_digest

STEPS, STOP_AT = 12, 6
LORA = {"rank": 4, "alpha": 8, "dropout": 0.05}


# ---- the base model folder and training runs ----------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny Qwen3 base model folder with DIO's tokenizer, as any HF user would save one."""
    return save_tiny_hf(tmp_path_factory.mktemp("base") / "tiny-qwen3")


def _home(root: Path, name: str, base: Path, profile: str) -> Path:
    home = root / name
    home.mkdir()
    training = {
        "batch_size": 2,
        "max_length": 128,
        "save_steps": 4,
        "keep_last": 5,
        "eval_every": 1000,
        "warmup_steps": 2,
        "event_interval_s": 0.0,
        "val_fraction": 0.05,
        "threads": 1,
    }
    hero = {"base_model": str(base), "profile": profile, "lora": LORA}
    vault = {"keep_hourly_h": 0, "keep_daily_d": 0, "keep_weekly": False}
    config = {"training": training, "hero": hero, "guild": {"auto_generate": False}, "vault": vault}
    (home / "realm.yaml").write_text(yaml.safe_dump(config))
    enqueue(home, "bin_add.jsonl", bin_chats(120))
    return home


def _arena(home: Path, max_steps: int):
    """The real arena daemon, in this process, until `max_steps`; returns it (its trainer kept)."""
    from arena.daemon import ArenaDaemon, ArenaHooks
    from sentinels.realm import Realm

    realm = Realm.open(home)
    try:
        daemon = ArenaDaemon(realm, hooks=ArenaHooks(intake=lambda: None), max_steps=max_steps)
        assert daemon.run() == 0
    finally:
        realm.store.close()
    return daemon


def _losses(home: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events(home, "step")}


_RUNS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    """profile -> one stopped-and-resumed run and one uninterrupted run (trained once per module)."""

    def get(profile: str) -> dict:
        if profile not in _RUNS:
            root = tmp_path_factory.mktemp(profile)
            resumed, straight = _home(root, "resumed", base, profile), _home(root, "straight", base, profile)
            first = _arena(resumed, STOP_AT)
            second = _arena(resumed, STEPS)
            _arena(straight, STEPS)
            _RUNS[profile] = {"home": resumed, "straight": straight, "first": first, "second": second}
        return _RUNS[profile]

    return get


def _checkpoints(home: Path) -> list[Path]:
    return sorted((p for p in (home / "models").iterdir() if p.name.startswith("checkpoint-")), key=_step)


def _step(p: Path) -> int:
    return int(p.name.split("-")[1])


def _digest(folder: Path) -> str:
    return tree_digest(FileEntry(rel, *hash_file(p)) for rel, p in list_files(folder))


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


PROMPT = torch.tensor([[60, 124, 105, 109, 95, 115, 116, 97, 114, 116, 124, 62, 117, 115, 101, 114, 10]])


# ---- exact resume ------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["full", "lora"])
def test_train_checkpoint_and_resume_exactly(trained, base, profile):
    run = trained(profile)
    resumed, ref = _losses(run["home"]), _losses(run["straight"])
    assert sorted(resumed) == sorted(ref) == list(range(1, STEPS + 1))
    assert max(abs(resumed[k] - ref[k]) for k in ref) < 1e-4
    assert resumed[STEPS] < resumed[1]  # it learned something, so the comparison means something

    trainer = run["second"].trainer
    assert trainer.profile.kind == profile and trainer.base_model == str(base.resolve())
    assert trainer.profile.reason.startswith(f"resumed from the {profile}")
    start = next(e for e in events(run["home"], "battle.start") if e["step"] == STOP_AT)
    assert start["resumed_at"]["offset"] > 0
    # Packed attention and logits_to_keep stay on through the peft wrapper.
    assert trainer.packed_attention and trainer.keep_logits
    inner = adapters.is_peft(trainer.model) and trainer.model.get_base_model() or trainer.model
    assert inner.config._attn_implementation == attention.NAME

    last = _checkpoints(run["home"])[-1]
    files = {p.name for p in last.iterdir()}
    side = orjson.loads((last / ".ledger.json").read_bytes())
    hero = side["hero"]
    assert hero["profile"] == profile and hero["preset"] is None
    assert hero["base_model"] == str(base.resolve()) and hero["base_sha256"] == _digest(base)
    if profile == "lora":
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files
        assert "model.safetensors" not in files
        assert 0 < hero["trainable_params"] < hero["total_params"] / 5
        # The checkpoint is the adapter: far smaller than the base it needs, and the disk guard
        # sizes the next save by the adapter, not by the whole model.
        adapter_size = (last / "adapter_model.safetensors").stat().st_size
        assert adapter_size * 5 < (base / "model.safetensors").stat().st_size
        model = trainer.acc.unwrap_model(trainer.model)
        need = checkpoint_need(SavedTensors(model), None, None)
        assert 0 < need * 5 < tensor_bytes(dict(model.state_dict()))
    else:
        assert "model.safetensors" in files and "adapter_config.json" not in files
        assert hero["trainable_params"] == hero["total_params"]
    # The published hero card: preset, profile and why, trainable against total parameters.
    card = trainer.hero()
    assert card["profile"] == profile and card["profile_reason"] and card["preset"] is None
    assert card["trainable_params"] == hero["trainable_params"] and card["params"] == hero["total_params"]
    first = run["first"].trainer.hero()
    assert first["profile"] == profile and "as configured" in first["profile_reason"]


# ---- loading and serving an adapter checkpoint ---------------------------------------------------------
def test_lora_checkpoint_loads_with_plain_peft_and_generates(trained, base):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = _checkpoints(trained("lora")["home"])[-1]
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    ids = torch.tensor([ids["input_ids"] if hasattr(ids, "keys") else ids])
    out = plain.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids.shape[1]

    # The realm's loader gives the same model (eval mode), and the adapter really changed the base.
    model, tokenizer = load_checkpoint_hero(ckpt)
    assert adapters.is_peft(model) and not model.training
    assert torch.allclose(_logits(model, PROMPT), _logits(plain, PROMPT), atol=1e-5)
    base_logits = _logits(AutoModelForCausalLM.from_pretrained(base), PROMPT)
    assert (base_logits - _logits(model, PROMPT)).abs().max() > 1e-3
    # The guild's evals generate through the adapted model.
    answers = make_generate_fn(model, tokenizer, max_new_tokens=4)(["Compute: add(①, ①)", "hi"])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_export_merged_matches_base_plus_adapter(trained, tmp_path):
    from transformers import AutoModelForCausalLM

    ckpt = _checkpoints(trained("lora")["home"])[-1]
    out = tmp_path / "merged"
    res = adapters.export_merged(ckpt, out)
    assert res["merged"] is True and res["out"] == str(out) and res["params"] > 0
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not files & {"adapter_config.json", "trainer_state.pt", "trainer_state.json", ".ledger.json"}
    merged = AutoModelForCausalLM.from_pretrained(out)
    peft_model, _ = load_checkpoint_hero(ckpt)
    assert (_logits(merged, PROMPT) - _logits(peft_model, PROMPT)).abs().max() < 1e-4
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(HeroError, match="already exists"):
        adapters.export_merged(ckpt, out)

    # A full checkpoint exports as its model and tokenizer files only.
    full = _checkpoints(trained("full")["home"])[-1]
    res = adapters.export_merged(full, tmp_path / "full")
    assert res["merged"] is False and res["params"] == adapters.total_params(merged)
    assert not {p.name for p in (tmp_path / "full").iterdir()} & {"trainer_state.pt", ".ledger.json"}
    original = AutoModelForCausalLM.from_pretrained(full)
    copied = AutoModelForCausalLM.from_pretrained(tmp_path / "full")
    assert torch.equal(_logits(copied, PROMPT), _logits(original, PROMPT))


# ---- profiles and their refusals ---------------------------------------------------------------------
def test_qlora_and_8bit_optimizers_on_cpu_are_refused(base):
    with pytest.raises(HeroError, match="qlora needs a CUDA GPU"):
        make_hero(HeroConfig(base_model=str(base), profile="qlora"), REPO, device="cpu")
    with pytest.raises(HeroError, match="adamw_8bit needs a CUDA GPU"):
        make_hero(
            HeroConfig(base_model=str(base), profile="lora", optimizer="adamw_8bit"), REPO, device="cpu"
        )

    class Qlora:
        kind = "qlora"

    # The adapters' own guards say the same, whoever calls them.
    with pytest.raises(HeroError, match="qlora .* needs a CUDA GPU"):
        adapters.load_base(base, Qlora(), "cpu")
    model = make_hero(HeroConfig(base_model=str(base), profile="lora"), REPO, device="cpu").model
    with pytest.raises(HeroError, match="paged_adamw_8bit needs a CUDA GPU"):
        adapters.build_optimizer(
            model, TrainingConfig(), HeroConfig(optimizer="paged_adamw_8bit"), device=torch.device("cpu")
        )


def test_lora_targets_only_what_the_model_has(base, caplog):
    lora = LoraConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj", "qkv_proj"))
    with caplog.at_level(logging.WARNING, logger="realm.adapters"):
        hero = make_hero(HeroConfig(base_model=str(base), profile="lora", lora=lora), REPO, device="cpu")
    assert "qkv_proj not in Qwen3ForCausalLM" in caplog.text
    assert sorted(hero.model.peft_config["default"].target_modules) == ["q_proj", "v_proj"]
    trainable = [n for n, p in hero.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    nothing = LoraConfig(target_modules=("qkv_proj", "gate_up_proj"))
    with pytest.raises(
        HeroError, match=r"none is a module of Qwen3ForCausalLM; its linear layers are \[.*q_proj"
    ):
        make_hero(HeroConfig(base_model=str(base), profile="lora", lora=nothing), REPO, device="cpu")


def test_gradient_checkpointing_under_lora_gives_the_same_gradients(base):
    """Checkpointing recomputes activations (adapters' inputs need grad through the frozen blocks);
    the loss and the adapters' gradients are those of the plain run."""
    grads = []
    for gc in (False, True):
        lora = LoraConfig(**{**LORA, "dropout": 0.0})
        cfg = HeroConfig(base_model=str(base), profile="lora", lora=lora, gradient_checkpointing=gc)
        model = make_hero(cfg, REPO, seed=3, device="cpu").model
        model.train()
        loss = model(input_ids=PROMPT, labels=PROMPT).loss
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        assert all(g is not None and g.abs().sum() > 0 for n, g in grads[-1].items() if "lora_B" in n)
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])
