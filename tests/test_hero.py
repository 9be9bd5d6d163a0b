"""The hero: tokenizer, formatting by spec, packing, generation, and a checkpoint any HF user can load."""

from __future__ import annotations

import pytest
import torch

from arena.formatting import FormatStats, Formatter
from arena.hero import build_hero, count_params
from arena.inference import make_generate_fn
from arena.packing import collate, pack
from sentinels.config import REPO_ROOT, HeroConfig


@pytest.fixture(scope="module")
def hero():
    return build_hero(HeroConfig(), REPO_ROOT, seed=0)


def test_default_hero_is_small_qwen3_with_byte_tokenizer(hero):
    model, tok = hero
    assert model.config.model_type == "qwen3"
    assert 2.0e6 < count_params(model) < 2.8e6
    text = "Compute: add(①⓪, ①①) — héllo ✓ <think>x</think>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    # Circled digits and tags are one token each; any other UTF-8 falls back to bytes (no unknowns).
    assert len(tok("①⓪①", add_special_tokens=False)["input_ids"]) == 3
    assert len(tok("<think>", add_special_tokens=False)["input_ids"]) == 1
    assert tok("A", add_special_tokens=False)["input_ids"] == [65]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert len(tok) == model.config.vocab_size


def fmt(tok, **kw):
    return Formatter(tok, **{"max_length": 256, "think_weight": 0.25, "overlong": "truncate", **kw})


def weighted_text(tok, ex, weight=1.0):
    return tok.decode([i for i, w in zip(ex.ids, ex.weights, strict=True) if w == weight])


def test_chat_loss_on_assistant_turns_only(hero):
    _, tok = hero
    rec = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Compute: add(①, ①)"},
            {"role": "assistant", "content": "①⓪"},
            {"role": "user", "content": "Again?"},
            {"role": "assistant", "content": "yes"},
        ]
    }
    ex = fmt(tok).format(rec, "chat_sft_v1", FormatStats())
    assert weighted_text(tok, ex) == "①⓪<|im_end|>\nyes<|im_end|>\n"
    assert tok.decode(ex.ids) == tok.apply_chat_template(rec["messages"], tokenize=False)


def test_completion_and_metacog_weights(hero):
    _, tok = hero
    f, st = fmt(tok), FormatStats()
    ex = f.format({"prompt": "2+2=", "completion": "4"}, "completion_v1", st)
    assert weighted_text(tok, ex) == "4<|im_end|>"
    ex = f.format({"text": "all of it"}, "completion_v1", st)
    assert weighted_text(tok, ex) == "all of it<|im_end|>"
    ex = f.format({"text": "Q? <think>hmm</think> <answer>42</answer>"}, "metacog_v1", st)
    assert weighted_text(tok, ex) == "<answer>42</answer><|im_end|>"
    assert weighted_text(tok, ex, 0.25) == "<think>hmm</think>"
    assert f.format({"text": "no tags"}, "metacog_v1", st) is None
    assert (st.examples, st.bad) == (3, 1)


def test_overlong_rule_truncates_or_refuses_and_counts(hero):
    _, tok = hero
    rec = {"prompt": "x" * 50, "completion": "y" * 50}
    st = FormatStats()
    ex = fmt(tok, max_length=60).format(rec, "completion_v1", st)
    assert len(ex) == 60 and (st.truncated, st.refused) == (1, 0)
    st = FormatStats()
    assert fmt(tok, max_length=60, overlong="refuse").format(rec, "completion_v1", st) is None
    assert (st.refused, st.examples) == (1, 0)
    st = FormatStats()  # truncated so far that nothing to learn is left: refused
    assert fmt(tok, max_length=40).format(rec, "completion_v1", st) is None and st.refused == 1


def test_packed_rows_compute_what_examples_compute_alone(hero):
    model, tok = hero
    f, st = fmt(tok), FormatStats()
    exs = [
        f.format({"prompt": f"Compute: add({a}, {b})=", "completion": str(a + b)}, "completion_v1", st)
        for a, b in [(1, 2), (30, 4), (5, 600)]
    ]
    rows = list(pack(exs, max_length=80))
    assert [r.examples for r in rows] == [3] and rows[0].end == 3
    batch = collate(rows, tok.pad_token_id)
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits
        at = 0
        for ex in exs:
            alone = model(input_ids=torch.tensor([ex.ids]), use_cache=False).logits
            assert torch.allclose(packed[0, at : at + len(ex)], alone[0], atol=1e-4)
            at += len(ex)
    # Targets never cross an example boundary.
    assert batch["weights"][0, len(exs[0]) - 1] == 0


def test_batched_greedy_generation_matches_one_by_one(hero):
    model, tok = hero
    gen = make_generate_fn(model, tok, max_new_tokens=6, batch_size=8)
    prompts = ["Compute: add(①, ①)", "hi", "a much longer prompt than the others, to force left padding"]
    assert gen(prompts) == [gen([p])[0] for p in prompts]
    assert gen([]) == []


def test_checkpoint_loads_with_plain_transformers_and_generates(tmp_path, hero):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arena.checkpoints import CheckpointManager
    from vault.store import Store

    model, tok = hero
    store = Store(tmp_path / "realm.db")
    store.migrate()
    cp = CheckpointManager(tmp_path / "models", store, keep_last=2).save(
        model=model, tokenizer=tok, loop_state={"step": 7}, tensors_state=None, ledger={"train_loss": 1.0}
    )
    assert cp.name.startswith("checkpoint-7-")
    m2 = AutoModelForCausalLM.from_pretrained(cp.path)
    t2 = AutoTokenizer.from_pretrained(cp.path)
    prompt = t2.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = t2(prompt, return_tensors="pt", add_special_tokens=False)
    out = m2.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert torch.equal(m2.model.embed_tokens.weight, model.model.embed_tokens.weight)
    store.close()


def test_any_local_hf_folder_becomes_the_hero(tmp_path, hero):
    model, tok = hero
    folder = tmp_path / "some-hf-model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    m2, t2 = build_hero(HeroConfig(base_model=str(folder)), REPO_ROOT)
    assert count_params(m2) == count_params(model)
    ex = fmt(t2).format(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        None,
        FormatStats(),
    )
    assert weighted_text(t2, ex) == "a<|im_end|>\n"
    with pytest.raises(ValueError, match="not a Hugging Face model folder"):
        build_hero(HeroConfig(base_model=str(tmp_path / "nope")), REPO_ROOT)


def test_every_skill_level_fits_the_default_context(hero):
    """The default rows and DIO's context hold the longest problems of every level of both skills
    (SY L50 puzzles are ~1,800 tokens), so the guild never trains on a cut-off answer."""
    import random

    from guild.generators import get_generator
    from sentinels.config import TrainingConfig

    model, tok = hero
    limit = TrainingConfig().max_length
    assert limit <= model.config.max_position_embeddings and limit <= tok.model_max_length
    st = FormatStats()
    for name in ("bin", "sy"):
        g = get_generator(name)
        for level in range(1, g.max_level + 1):
            for seed in range(4):
                it = g.make(random.Random(seed), level)
                chat = {
                    "messages": [
                        {"role": "user", "content": it["prompt"]},
                        {"role": "assistant", "content": it["expected"]},
                    ]
                }
                assert fmt(tok, max_length=limit, overlong="refuse").format(chat, "chat_sft_v1", st), (
                    name,
                    level,
                )
    assert st.truncated == st.refused == 0
