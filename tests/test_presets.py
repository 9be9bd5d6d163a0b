"""Hero presets, memory-profile choice, `realm hero list|show|export` and the hero card's line (#17).

- Every preset file in configs/heroes/ parses, names a local folder (never a download), uses LoRA
  targets that fit its architecture and realistic learning rates, and its memory needs agree with
  arena/profiles.py's formula; an unknown key is refused naming the file and the key.
- Layering: defaults < the preset's suggestions < the keys a realm.yaml writes; an unknown preset is a
  ConfigError naming hero.preset and listing the known ones.
- resolve_hero: DIO, hero.base_model, a preset's folder (a tiny real Qwen3 folder saved with
  save_pretrained under $REALM_MODELS), and a missing folder named with the repo id to fetch.
- choose_profile: full when it fits, lora with the numbers when it does not, qlora refused on a CPU,
  and auto refused when nothing fits.
- `realm hero list --json` (the real CLI, once) and `show`/`export` (click's runner), and the hero
  card passing the trainer's preset, profile and parameter counts through.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest
import torch
import yaml
from click.testing import CliRunner

from arena.hero import HeroError, HeroSpec, byte_tokenizer
from arena.hero_cli import hero as hero_group
from arena.presets import (
    PresetError,
    PresetFileError,
    get_preset,
    hero_label,
    layer_under,
    list_presets,
    resolve_hero,
)
from arena.profiles import (
    ProfileError,
    choose_profile,
    count_params_in_folder,
    estimate_bytes,
    free_memory,
)
from sentinels.config import ConfigError, HeroConfig, RealmConfig, load_config
from tests.helpers import REPO, run_realm, save_tiny_hf

EXPECTED = {
    "qwen3-0.6b",
    "qwen3-1.7b",
    "qwen3-4b",
    "qwen3-8b",
    "qwen3-14b",
    "qwen2.5-0.5b",
    "qwen2.5-1.5b",
    "qwen2.5-7b",
    "mistral-7b",
    "phi-3.5-mini",
    "smollm2-135m",
    "smollm2-360m",
    "smollm2-1.7b",
}
GB = 1e9


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    """$REALM_MODELS with a tiny Qwen3 folder named as the qwen3-0.6b preset expects (Qwen3-0.6B)."""
    root = tmp_path_factory.mktemp("models")
    save_tiny_hf(root / "Qwen3-0.6B", max_positions=256)
    return root


def write_preset(root: Path, name: str, body: dict) -> Path:
    folder = root / "configs" / "heroes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"preset": body}), encoding="utf-8")
    return path


def minimal(**extra) -> dict:
    return {
        "description": "a test preset",
        "model_dir": "models/tiny",
        "hf_repo": "someone/Tiny-1M",
        "params": 1e6,
        "needs": {"full_gb": 1.0, "lora_gb": 1.0, "qlora_gb": 1.0},
        **extra,
    }


# ---- the preset files ---------------------------------------------------------------------------
def test_every_preset_parses_and_its_needs_follow_the_formula():
    presets = {p.name: p for p in list_presets(REPO)}
    assert set(presets) == EXPECTED  # dio.yaml (DIO's description) is not a preset
    for name, p in presets.items():
        b = p.body
        assert "$REALM_MODELS/" in b.model_dir and "http" not in b.model_dir, name
        assert b.hf_repo in b.description, f"{name}: the description names the repo to download"
        for kind in ("full", "lora", "qlora"):
            formula = estimate_bytes(kind, b.params, "cuda") / GB
            assert getattr(b.needs, f"{kind}_gb") == pytest.approx(formula, rel=0.10), (name, kind)
        lr = b.training.learning_rate
        assert (1e-5 <= lr <= 2e-5) if b.profile == "full" else (1e-4 <= lr <= 2e-4), (name, lr)
        targets = set(b.lora.target_modules)
        if name.startswith("phi"):
            assert targets == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
        else:
            assert {"q_proj", "v_proj", "down_proj"} <= targets, name
    assert presets["qwen3-14b"].body.profile == "qlora" and presets["qwen3-14b"].body.lora.rank == 32
    assert presets["qwen3-14b"].body.optimizer == "paged_adamw_8bit"
    assert presets["qwen3-0.6b"].label == "Qwen3-0.6B"


def test_an_unknown_key_names_the_file_and_the_key(tmp_path):
    path = write_preset(tmp_path, "bad", minimal(colour="red"))
    with pytest.raises(PresetFileError) as info:
        get_preset("bad", tmp_path)
    assert info.value.source == str(path) and info.value.key == "preset.colour"
    assert "allowed keys here" in str(info.value)
    write_preset(tmp_path, "bad", minimal(training={"lr": 0.1}))
    with pytest.raises(PresetFileError) as info:
        get_preset("bad", tmp_path)
    assert info.value.key == "preset.training.lr" and "learning_rate" in info.value.problem
    write_preset(tmp_path, "bad", minimal(profile="half"))
    with pytest.raises(PresetFileError, match="preset.profile"):
        get_preset("bad", tmp_path)


# ---- layering -----------------------------------------------------------------------------------
def test_preset_settings_sit_between_defaults_and_the_users_keys(home):
    (home / "realm.yaml").write_text(
        "hero: {preset: qwen3-0.6b}\ntraining: {learning_rate: 0.001}\n", encoding="utf-8"
    )
    cfg = load_config(home=home)
    preset = get_preset("qwen3-0.6b", REPO).body
    assert cfg.training.learning_rate == 0.001  # the user's key wins
    assert cfg.training.batch_size == preset.training.batch_size == 8  # the preset's beats the default
    assert cfg.training.grad_accum == preset.training.grad_accum
    assert cfg.hero.profile == "full" and cfg.training.seed == RealmConfig().training.seed

    # A partial hero.lora keeps the preset's other LoRA keys (Phi-3's fused projections).
    (home / "realm.yaml").write_text(
        "hero: {preset: phi-3.5-mini, profile: full, lora: {rank: 4}}\n", encoding="utf-8"
    )
    cfg = load_config(home=home)
    assert cfg.hero.lora.rank == 4 and cfg.hero.profile == "full"
    assert cfg.hero.lora.target_modules == ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    assert cfg.hero.gradient_checkpointing is True  # the preset's suggestion

    (home / "realm.yaml").write_text("hero: {preset: qwen3-0.5b}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(home=home)
    assert info.value.key == "hero.preset" and info.value.source == str(home / "realm.yaml")
    assert "unknown hero preset 'qwen3-0.5b'" in str(info.value) and "qwen2.5-0.5b" in str(info.value)


def test_spelled_out_defaults_do_not_hide_a_preset():
    """The repo's configs/realm.yaml writes every default; there, a default value is not a choice."""
    layer = get_preset("qwen3-14b", REPO).layer()
    defaults = RealmConfig().to_dict()
    spelled = {"hero": dict(defaults["hero"], preset="qwen3-14b"), "training": dict(defaults["training"])}
    merged = layer_under(layer, spelled, defaults)
    assert merged["training"]["learning_rate"] == 1e-4 and merged["hero"]["profile"] == "qlora"
    assert merged["hero"]["lora"]["rank"] == 32 and merged["hero"]["optimizer"] == "paged_adamw_8bit"
    spelled["training"]["learning_rate"] = 5e-5  # changed from the default: the user's choice
    assert layer_under(layer, spelled, defaults)["training"]["learning_rate"] == 5e-5
    # Without `defaults` (a home's own realm.yaml) every written key wins, defaults included.
    assert layer_under(layer, spelled)["hero"]["profile"] == "auto"


# ---- which hero ---------------------------------------------------------------------------------
def test_resolve_hero_dio_base_model_preset_and_missing_folder(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("REALM_MODELS", str(tiny_models))
    folder = tiny_models / "Qwen3-0.6B"
    dio = resolve_hero(HeroConfig(), REPO)
    assert (dio.kind, dio.path, dio.preset, dio.label) == ("dio", None, None, "DIO")

    by_preset = resolve_hero(HeroConfig(preset="qwen3-0.6b"), REPO)
    assert (by_preset.kind, by_preset.path, by_preset.preset) == ("folder", folder.resolve(), "qwen3-0.6b")
    assert by_preset.label == "Qwen3-0.6B" and by_preset.chat_template is None

    # base_model wins over the preset's folder; the preset still names the hero and its template.
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "config.json").write_text((folder / "config.json").read_text())
    both = resolve_hero(HeroConfig(preset="qwen3-0.6b", base_model=str(other)), REPO)
    assert both.path == other.resolve() and both.preset == "qwen3-0.6b"
    alone = resolve_hero(HeroConfig(base_model=str(folder)), REPO)
    assert (alone.kind, alone.preset, alone.label) == ("folder", None, "Qwen3-0.6B")

    monkeypatch.setenv("REALM_MODELS", str(tmp_path / "empty"))
    with pytest.raises(HeroError) as info:
        resolve_hero(HeroConfig(preset="qwen3-8b"), REPO)
    msg = str(info.value)
    assert str(tmp_path / "empty" / "Qwen3-8B") in msg and "Qwen/Qwen3-8B" in msg
    assert "nothing is downloaded at run time" in msg

    # chatml in a preset is DIO's ChatML template, for a folder whose tokenizer has none.
    from arena.hero import CHAT_TEMPLATE

    write_preset(tmp_path, "tiny", minimal(model_dir=str(folder), chat_template="chatml"))
    src = resolve_hero(HeroConfig(preset="tiny"), tmp_path)
    assert src.chat_template == CHAT_TEMPLATE and src.label == "Tiny-1M"


# ---- the memory profile -------------------------------------------------------------------------
def test_choose_profile_cases():
    small = choose_profile("auto", n_params=100_000_000, device="cpu", free_bytes=64 * 2**30)
    assert small.kind == "full" and "fits" in small.reason
    assert small.estimates["full"] == estimate_bytes("full", 1e8, "cpu") and small.estimates["qlora"] is None

    big = choose_profile("auto", n_params=4_000_000_000, device="cpu", free_bytes=40 * 10**9)
    assert big.kind == "lora"
    assert "full fine-tuning needs 81.0 GB" in big.reason and "40.0 GB free on cpu" in big.reason

    # A 14B hero on a 24 GB GPU: qlora with bitsandbytes; without it, refused with what to install.
    if _has_bnb():
        gpu = choose_profile("auto", n_params=14_800_000_000, device="cuda:0", free_bytes=24 * 10**9)
        assert gpu.kind == "qlora" and "lora needs 43.9 GB" in gpu.reason
    else:
        with pytest.raises(ProfileError, match="install the gpu extra"):
            choose_profile("auto", n_params=14_800_000_000, device="cuda:0", free_bytes=24 * 10**9)
    with pytest.raises(ProfileError) as info:
        choose_profile("qlora", n_params=1_000_000, device="cpu", free_bytes=64 * 2**30)
    assert str(info.value) == (
        "hero.profile qlora needs a CUDA GPU (bitsandbytes 4-bit); this machine has none: "
        "use profile lora or full"
    )
    assert isinstance(info.value, HeroError)
    with pytest.raises(ProfileError, match="paged_adamw_8bit needs a CUDA GPU"):
        choose_profile(
            "lora", n_params=1_000_000, device="cpu", free_bytes=None, optimizer="paged_adamw_8bit"
        )
    with pytest.raises(ProfileError) as info:
        choose_profile("auto", n_params=14_800_000_000, device="cpu", free_bytes=16 * 10**9)
    assert "no profile fits" in str(info.value) and "qlora needs a CUDA GPU" in str(info.value)

    forced = choose_profile("full", n_params=4_000_000_000, device="cpu", free_bytes=8 * 10**9)
    assert forced.kind == "full" and "may not fit" in forced.reason  # honoured, with a warning


def _has_bnb() -> bool:
    from arena.profiles import bitsandbytes_available

    return bitsandbytes_available()


def test_counting_a_folder_reads_no_weights(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = tiny_models / "Qwen3-0.6B"
    real = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(folder).parameters())
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text((folder / "config.json").read_text())
    assert count_params_in_folder(config_only) == real  # no weights file at all
    free = free_memory("cpu")
    assert isinstance(free, int) and free > 0


# ---- the CLI ------------------------------------------------------------------------------------
def test_realm_hero_list_json(home):
    proc = run_realm("hero", "list", "--json", home=home, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows[0]["name"] == "dio" and rows[0]["default"] and rows[0]["active"]
    assert 2_000_000 < rows[0]["params"] < 3_000_000
    assert {r["name"] for r in rows[1:]} == EXPECTED
    q14 = next(r for r in rows if r["name"] == "qwen3-14b")
    assert q14["profile"] == "qlora" and q14["needs"]["qlora_gb"] < 24 < q14["needs"]["lora_gb"]
    assert q14["hf_repo"] == "Qwen/Qwen3-14B" and isinstance(q14["folder_present"], bool)


def test_hero_show_says_what_auto_picks_here(home, tiny_models, monkeypatch):
    monkeypatch.setenv("REALM_MODELS", str(tiny_models))
    runner = CliRunner()
    res = runner.invoke(hero_group, ["show", "qwen3-0.6b", "--json", "--home", str(home)], obj={})
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["folder_present"] and info["params"] == count_params_in_folder(tiny_models / "Qwen3-0.6B")
    assert info["auto"]["kind"] == "full" and "fits" in info["auto"]["reason"]

    res = runner.invoke(hero_group, ["show", "qwen3-14b", "--home", str(home)], obj={})
    assert res.exit_code == 0, res.output
    assert (
        "recommended  refused: hero.profile qlora needs a CUDA GPU" in res.output or torch.cuda.is_available()
    )
    assert "huggingface-cli download Qwen/Qwen3-14B" in res.output

    res = runner.invoke(hero_group, ["show", "nope", "--home", str(home)], obj={})
    assert res.exit_code == 2 and "unknown hero preset 'nope'" in res.output and "qwen3-8b" in res.output


def test_export_resolves_a_folder_or_a_ledger_reference(realm, tiny_models, tmp_path):
    """`realm hero export` of a full checkpoint, named by the ledger: a folder from_pretrained loads."""
    from transformers import AutoModelForCausalLM

    from vault.catalog import Catalog
    from vault.ledger import Ledger

    name = f"checkpoint-40-{time.strftime('%Y%m%d-%H%M')}"
    folder = realm.home.models / name
    base = AutoModelForCausalLM.from_pretrained(tiny_models / "Qwen3-0.6B")
    base.save_pretrained(folder)
    byte_tokenizer(HeroSpec.read(REPO / "configs" / "heroes" / "dio.yaml").tokenizer).save_pretrained(folder)
    sidecar = {
        "step": 40,
        "name": name,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ledger_version": 1,
    }
    (folder / ".ledger.json").write_bytes(orjson.dumps(sidecar))
    Ledger(realm.store).land(folder, sidecar, Catalog(realm.store, realm.home.root))

    runner = CliRunner()
    out = tmp_path / "merged"
    args = ["export", "dio@latest", "--merge", str(out), "--home", str(realm.home.root)]
    res = runner.invoke(hero_group, args, obj={})
    assert res.exit_code == 0, res.output
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        want = base(ids).logits
        got = AutoModelForCausalLM.from_pretrained(out)(ids).logits
    assert torch.allclose(want, got, atol=1e-4)

    res = runner.invoke(
        hero_group,
        ["export", "step-999", "--merge", str(tmp_path / "x"), "--home", str(realm.home.root)],
        obj={},
    )
    assert res.exit_code == 1 and "neither a folder nor a checkpoint the ledger holds" in res.output


# ---- the hero card ------------------------------------------------------------------------------
def test_hero_card_passes_the_preset_profile_and_parameters_through(realm):
    from watchtower.status import hero_card, realm_status

    card = hero_card(realm)
    assert card["label"] == "DIO" and card["profile"] is None and card["loadout"] == "DIO"
    published = {
        "name": "DIO",
        "xp": 12,
        "preset": "qwen3-0.6b",
        "profile": "lora",
        "profile_reason": "auto: lora, because ...",
        "trainable_params": 10_092_544,
        "params": 606_000_000,
    }
    realm.store.set_state("hero", published)
    card = hero_card(realm)
    assert {k: card[k] for k in published} == published
    assert card["label"] == "Qwen3-0.6B"
    assert card["loadout"] == "Qwen3-0.6B · lora · 10.1M / 606M trainable"
    assert realm_status(realm)["hero_line"] == card["loadout"]

    realm.store.set_state(
        "hero", {"xp": 1, "profile": "full", "trainable_params": 2_410_000, "params": 2_410_000}
    )
    assert hero_card(realm)["loadout"] == "DIO · full · 2.41M"
    assert hero_label(HeroConfig(base_model="/x/My-Model"), REPO) == "My-Model"
    assert hero_label(HeroConfig(), REPO, "no-such-preset") == "no-such-preset"  # never breaks the card


def test_preset_error_is_a_value_error():
    with pytest.raises(PresetError):
        get_preset("nope", REPO)
