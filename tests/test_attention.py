"""Packed attention computes exactly what the dense block-diagonal mask computes, forward and backward."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from arena import attention
from arena.hero import build_hero
from arena.packing import collate, pack
from sentinels.config import load_config
from tests.conftest import REPO


class _Ex:
    def __init__(self, ids: list[int]):
        self.ids = ids
        self.weights = [1.0] * len(ids)

    def __len__(self) -> int:
        return len(self.ids)


def _hero():
    model, tok = build_hero(load_config(REPO / "configs" / "realm.yaml").hero, REPO, seed=7)
    return model, tok


def _batch(tok, lengths: list[int], max_length: int, seed: int = 0):
    rng = random.Random(seed)
    exs = [_Ex([rng.randrange(3, 200) for _ in range(n)]) for n in lengths]
    rows = list(pack(exs, max_length))
    return rows, collate(rows, tok.pad_token_id)


def _loss_and_grads(model, batch, rows, packed_on: bool):
    model.zero_grad(set_to_none=True)
    segs = attention.plan([r.lengths for r in rows], batch["input_ids"].shape[1]) if packed_on else None
    with attention.packed(segs):
        logits = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits
    ce = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), reduction="none")
    loss = (ce * batch["weights"].flatten()).sum() / batch["weights"].sum()
    loss.backward()
    return logits.detach(), loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "lengths,max_length",
    [
        ([50] * 20, 256),  # BIN-like: five examples a row
        ([7, 300, 120, 33, 1, 64, 65, 500, 2, 90, 250, 17], 512),  # mixed lengths, one-token examples
        ([256, 256, 10], 256),  # full rows and a short last row (row padding)
    ],
)
def test_packed_attention_equals_dense_mask(lengths, max_length):
    model, tok = _hero()
    assert attention.enable(model)
    rows, batch = _batch(tok, lengths, max_length)
    ref_logits, ref_loss, ref_grads = _loss_and_grads(model, batch, rows, packed_on=False)
    got_logits, got_loss, got_grads = _loss_and_grads(model, batch, rows, packed_on=True)
    real = batch["weights"] > 0  # padding logits differ by design (zeros instead of garbage)
    assert torch.allclose(got_logits[real], ref_logits[real], atol=1e-4), (
        (got_logits - ref_logits).abs().max()
    )
    assert got_loss == pytest.approx(ref_loss, abs=1e-5)
    for name, g in ref_grads.items():
        assert torch.allclose(got_grads[name], g, atol=1e-4, rtol=1e-3), name


def test_packed_attention_is_per_example_not_per_row():
    """Changing one example must not move another example's logits in the same row."""
    model, tok = _hero()
    attention.enable(model)
    model.eval()
    rows_a, a = _batch(tok, [40, 40, 40], 128, seed=1)
    b = {k: v.clone() for k, v in a.items()}
    b["input_ids"][0, 40:80] = (b["input_ids"][0, 40:80] + 5) % 200  # second example only
    segs = attention.plan([r.lengths for r in rows_a], a["input_ids"].shape[1])
    with torch.no_grad(), attention.packed(segs):
        la = model(input_ids=a["input_ids"], position_ids=a["position_ids"], use_cache=False).logits
        lb = model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False).logits
    assert torch.equal(la[0, :40], lb[0, :40]) and torch.equal(la[0, 80:120], lb[0, 80:120])
    assert not torch.allclose(la[0, 40:80], lb[0, 40:80])


def test_generation_outside_packed_is_plain_sdpa():
    """Outside `packed(...)` the hero generates exactly as with the stock SDPA implementation."""
    model, tok = _hero()
    model.eval()
    ids = torch.tensor([[5, 9, 11, 13, 17]])
    ref = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    attention.enable(model)
    got = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(ref, got)


def test_bucket_widths_bound_the_padding():
    for n in range(1, 2049):
        w = attention.bucket(n)
        assert w >= n
        assert w - n < max(8, n / 8 + 1), (n, w)
    assert len({attention.bucket(n) for n in range(16, 1025)}) <= 45


def _tiny(kind: str):
    from transformers import AutoModelForCausalLM, Gemma2Config, MistralConfig, Qwen3Config

    common = dict(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=512,
    )
    if kind == "mistral":
        cfg = MistralConfig(sliding_window=8, **common)
    elif kind == "qwen3":  # one sliding layer, one full layer
        cfg = Qwen3Config(
            use_sliding_window=True,
            sliding_window=8,
            max_window_layers=1,
            layer_types=["sliding_attention", "full_attention"],
            **common,
        )
    else:
        cfg = Gemma2Config(attn_logit_softcapping=50.0, **common)
    torch.manual_seed(3)
    impl = "eager" if kind == "gemma2" else "sdpa"  # transformers has no SDPA path for Gemma 2
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=impl).eval()


@pytest.mark.parametrize("kind", ["mistral", "qwen3"])
def test_sliding_window_layers_stay_inside_each_example(kind):
    """A sliding-window layer under packing sees the last `window` tokens of its own example only:
    each packed example's logits equal that example run alone through stock SDPA."""
    model = _tiny(kind)
    rng = random.Random(5)
    lengths = [20, 30, 15]
    exs = [[rng.randrange(3, 250) for _ in range(n)] for n in lengths]
    alone = []
    with torch.no_grad():
        for ids in exs:
            alone.append(model(input_ids=torch.tensor([ids]), use_cache=False).logits[0])
    assert attention.enable(model)
    ids = torch.tensor([sum(exs, [])])
    pos = torch.tensor([[i for n in lengths for i in range(n)]])
    segs = attention.plan([lengths], ids.shape[1])
    with torch.no_grad(), attention.packed(segs):
        got = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
    start = 0
    for n, ref in zip(lengths, alone, strict=True):
        assert torch.allclose(got[start : start + n], ref, atol=1e-5), (
            kind,
            n,
            (got[start : start + n] - ref).abs().max(),
        )
        start += n


def test_softcapped_models_are_not_switched():
    model = _tiny("gemma2")
    assert not attention.enable(model)
