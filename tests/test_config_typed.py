"""The one typed mechanism (sentinels.typed) and the config, skill and hero schemas declared with it."""

from __future__ import annotations

import doctest
import re
from typing import Annotated, Literal

import msgspec
import pytest

from sentinels import typed
from sentinels.typed import TypedError, convert


class Inner(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535, description="a TCP port")] = 8888
    share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    level: Literal["quick", "deep"] = "quick"
    names: tuple[str, ...] = ("a",)


class Outer(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    inner: Annotated[Inner, msgspec.Meta(extra={"restart": True})] = msgspec.field(default_factory=Inner)
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] | None = None


def test_convert_returns_the_struct_with_defaults():
    out = convert({"name": "x", "inner": {"share": 1}}, Outer, source="f.yaml")
    assert out == Outer(name="x", inner=Inner(share=1.0))


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"name": "x", "colour": 1}, "colour", "unknown key; allowed keys here: name, inner, url"),
        ({"name": "x", "inner": {"bogus": 1}}, "inner.bogus", "allowed keys here: port, share, level, names"),
        ({}, "name", "missing; this key is required"),
        (
            {"name": "x", "inner": {"port": 70000}},
            "inner.port",
            "expected an integer from 1 to 65535 (a TCP port), got 70000",
        ),
        ({"name": "x", "inner": {"port": True}}, "inner.port", "(a TCP port), got true"),
        ({"name": "x", "inner": {"share": 2}}, "inner.share", "expected a number from 0 to 1, got 2"),
        (
            {"name": "x", "inner": {"level": "paranoid"}},
            "inner.level",
            "one of 'quick', 'deep', got 'paranoid'",
        ),
        ({"name": "x", "inner": {"names": ["a", 3]}}, "inner.names[1]", "expected a string, got 3"),
        ({"name": "x", "inner": None}, "inner", "expected a mapping, got null"),
        ({"name": "x", "url": "ftp://h"}, "url", "matching ^https?:// or null, got 'ftp://h'"),
        (["not", "a", "mapping"], "<top>", "expected a mapping, got a list"),
    ],
)
def test_error_names_source_key_and_problem(data, key, words):
    with pytest.raises(TypedError) as info:
        convert(data, Outer, source="f.yaml")
    err = info.value
    assert (err.source, err.key) == ("f.yaml", key)
    assert words in err.problem
    assert str(err) == f"f.yaml: key '{key}': {err.problem}"
    assert isinstance(err, ValueError)


def test_a_subclass_error_type_is_raised_when_asked():
    class SkillProblem(TypedError):
        pass

    with pytest.raises(SkillProblem):
        convert({}, Outer, source="s.yaml", error=SkillProblem)


def test_flagged_lists_keys_declared_with_an_extra_flag():
    assert typed.flagged(Outer, "restart") == frozenset({"inner"})


def test_module_docstring_example_holds():
    assert doctest.testmod(typed).failed == 0


# --- the realm config: defaults in one place -------------------------------------------------------


def test_repo_realm_yaml_spells_out_exactly_the_struct_defaults():
    """configs/realm.yaml documents the defaults; the Structs own them. A drift here would make a home
    realm.yaml that leaves a key out behave differently from the repo file."""
    import yaml

    from sentinels.config import DEFAULT_CONFIG, RealmConfig, parse_config

    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    assert parse_config(data, str(DEFAULT_CONFIG)) == RealmConfig()
    assert set(data) == set(RealmConfig().to_dict()), "every section and top-level key is spelled out"
    for section, values in RealmConfig().to_dict().items():
        if isinstance(values, dict):
            assert set(data[section]) == set(values), f"{section}: every key is spelled out"


def test_restart_keys_are_declared_next_to_their_fields():
    from sentinels.config import RESTART_KEYS

    assert RESTART_KEYS == {
        "home",
        "bind",
        "ports",
        "hero.base_model",
        "hero.config",
        "hero.preset",
        "hero.profile",
        "hero.lora",
        "hero.gradient_checkpointing",
        "hero.optimizer",
    }


def test_realm_yaml_marks_exactly_the_restart_keys():
    from sentinels.config import DEFAULT_CONFIG, RESTART_KEYS

    marked, section = set(), ""
    for line in DEFAULT_CONFIG.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^( *)([a-z_]+):", line)
        if not m:
            continue
        key = m[2] if not m[1] else f"{section}.{m[2]}"
        section = m[2] if not m[1] else section
        if "(restart)" in line:
            marked.add(key)
    assert marked == RESTART_KEYS


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"training": None}, "training", "expected a mapping, got null"),
        ({"tavern": {"nice": 20}}, "tavern.nice", "from 0 to 19 (a CPU niceness), got 20"),
        ({"training": {"val_fraction": 1.5}}, "training.val_fraction", "from 0 to 1, got 1.5"),
        ({"guild": {"skills": ["bin", 7]}}, "guild.skills[1]", "expected a string, got 7"),
        ({"training": {"batch_size": 0}}, "training.batch_size", "an integer >= 1, got 0"),
    ],
)
def test_config_errors_name_the_key(data, key, words):
    from sentinels.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(data, "home/realm.yaml")
    assert info.value.key == key
    assert words in str(info.value)
    assert isinstance(info.value, TypedError)


# --- skill and hero YAML through the same mechanism ------------------------------------------------


def _skill_file(tmp_path, mutate):
    import yaml

    from sentinels.config import REPO_ROOT

    data = yaml.safe_load((REPO_ROOT / "configs" / "skills" / "bin.yaml").read_text(encoding="utf-8"))
    mutate(data)
    d = tmp_path / "skills"
    d.mkdir(exist_ok=True)
    (d / "bin.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return d


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda d: d.update(max_level=0), "max_level", "expected an integer >= 1, got 0"),
        (lambda d: d["generator"].update(version="1"), "generator.version", "expected an integer, got '1'"),
        (lambda d: d["eval"].update(pass_threshold=1.5), "eval.pass_threshold", "from 0 to 1 or null"),
        (lambda d: d["api"].update(url="ftp://x"), "api.url", "(an http(s) URL) or null, got 'ftp://x'"),
        (lambda d: d.update(colour="red"), "colour", "unknown key; allowed keys here: id, name"),
        (lambda d: d.pop("generator"), "generator", "missing; this key is required"),
    ],
)
def test_a_bad_skill_file_is_refused_naming_file_and_key(tmp_path, mutate, key, words):
    from guild.skills import SkillError, load_skill

    d = _skill_file(tmp_path, mutate)
    with pytest.raises(SkillError) as info:
        load_skill("bin", d)
    assert str(info.value).startswith(f"{d / 'bin.yaml'}: key '{key}': ")
    assert words in str(info.value) and "_template.yaml" in str(info.value)
    assert isinstance(info.value, TypedError) and info.value.key == key


def test_a_good_skill_file_keeps_its_values(tmp_path):
    from guild.skills import load_skill

    d = _skill_file(tmp_path, lambda data: data["api"].update(url="http://127.0.0.1:9/"))
    spec = load_skill("bin", d)
    assert (spec.id, spec.max_level, spec.generator, spec.generator_version) == ("bin", 30, "bin", 2)
    assert (spec.eval_size, spec.pass_threshold, spec.api_url) == (None, None, "http://127.0.0.1:9")
    assert spec.levels[0] == {"level": 1, "bits": 2, "title": "Two-bit sums"}


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda d: d.update(architecture="llama"), "architecture", "only qwen3 is built from a description"),
        (lambda d: d["tokenizer"].update(pad="x"), "tokenizer.pad", "unknown key"),
        (lambda d: d["tokenizer"].update(added_tokens="abc"), "tokenizer.added_tokens", "expected a list"),
        (lambda d: d.pop("model"), "model", "missing"),
    ],
)
def test_a_bad_hero_file_is_refused_naming_file_and_key(tmp_path, mutate, key, words):
    import yaml

    from arena.hero import HeroError, HeroSpec
    from sentinels.config import REPO_ROOT

    data = yaml.safe_load((REPO_ROOT / "configs" / "heroes" / "dio.yaml").read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "hero.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(HeroError) as info:
        HeroSpec.read(path)
    assert str(info.value).startswith(f"{path}: key '{key}': ") and words in str(info.value)


def test_the_default_hero_file_parses_to_its_declared_tokens():
    from arena.hero import HeroSpec
    from sentinels.config import REPO_ROOT

    spec = HeroSpec.read(REPO_ROOT / "configs" / "heroes" / "dio.yaml")
    assert spec.model["hidden_size"] == 192
    assert (spec.tokenizer.pad_token, spec.tokenizer.eos_token) == ("<|endoftext|>", "<|im_end|>")
    assert "<think>" in spec.tokenizer.added_tokens and spec.tokenizer.model_max_length == 2048
