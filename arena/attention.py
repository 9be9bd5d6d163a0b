"""Packed attention: each packed example attends to itself only, and pays only for its own length.

Why this exists: with packing alone, transformers turns position-id resets into a block-diagonal
mask over the whole row, and SDPA then computes every (query, key) pair of the row and throws most
away. A 1,024-token row of ten 100-token examples pays 10x the attention it needs, and at a small
hero's width (DIO's d=192) attention over a whole row costs more than all the matmuls together.

What it does: the trainer says where the examples are (`Segments`, built from the packed rows),
and the attention function gathers each example into its own batch row, grouped by length with
rows padded to the group's length, and runs causal SDPA (`is_causal=True`, which skips the blocks
above the diagonal) per group. Outputs are scattered back to their places in the packed rows; row
padding outside every example gets zeros (it has weight 0 and no real token attends to it). Pads
inside a group sit after the example's last token, so causal attention never lets a real token
see them. The result equals the masked computation (tests/test_attention.py checks it).

It is model-agnostic: registered with transformers' AttentionInterface (and a mask function that
skips building the dense mask while packed segments are active), so any HF model that dispatches
attention through `ALL_ATTENTION_FUNCTIONS` uses it. Sliding-window layers get a
band inside each example. Outside `packed(...)` (generation, eval) it defers to plain SDPA; models with
attention-logit softcapping (which SDPA cannot express) are not switched at all (`enable`). The name is
never saved: `_attn_implementation` is not written to config.json, so checkpoints load anywhere.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

log = logging.getLogger("realm.attention")

NAME = "realm_packed"


@dataclass
class Group:
    """Examples of similar length gathered into an [n, width] batch of flat token indices."""

    index: torch.Tensor  # [n, width] flat token index per slot (pads repeat a valid index)
    keep: torch.Tensor  # [k] slots (flat over n * width) that hold real tokens
    n: int
    width: int


@dataclass
class Segments:
    groups: list[Group]
    dest: torch.Tensor  # [tokens] flat positions in [B * L] of the kept slots, group after group

    def to(self, device) -> Segments:
        return Segments(
            [Group(g.index.to(device), g.keep.to(device), g.n, g.width) for g in self.groups],
            self.dest.to(device),
        )


_active: ContextVar[Segments | None] = ContextVar("realm_packed_segments", default=None)


def bucket(length: int) -> int:
    """Group width for an example: rounded up to an eighth of its power of two (at least 8), so
    pads cost at most ~12% of a group beyond 64 tokens and a 16..1,024 spread makes about 40
    groups (one SDPA call each per layer)."""
    step = max(8, (1 << max(0, length.bit_length() - 1)) // 8)
    return -(-length // step) * step


def plan(lengths: Sequence[Sequence[int]], width: int) -> Segments:
    """Segments for rows of `width` tokens, where row i holds examples of `lengths[i]` end to end."""
    by_width: dict[int, list[tuple[int, int]]] = {}
    for r, row in enumerate(lengths):
        start = r * width
        for n in row:
            by_width.setdefault(bucket(n), []).append((start, n))
            start += n
    groups, dest = [], []
    for w in sorted(by_width):
        spans = by_width[w]
        index = torch.empty((len(spans), w), dtype=torch.long)
        keep = []
        ar = torch.arange(w)
        for i, (start, n) in enumerate(spans):
            # Pads point at the example's last token: harmless, causal attention never reads them.
            index[i] = start + ar.clamp(max=n - 1)
            keep.append(torch.arange(i * w, i * w + n))
            dest.append(torch.arange(start, start + n))
        groups.append(Group(index, torch.cat(keep), len(spans), w))
    return Segments(groups, torch.cat(dest) if dest else torch.empty(0, dtype=torch.long))


@contextlib.contextmanager
def packed(segments: Segments | None) -> Iterator[None]:
    """Forward passes inside use per-example attention (no-op with None)."""
    token = _active.set(segments)
    try:
        yield
    finally:
        _active.reset(token)


def packed_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    segs = _active.get()
    if segs is None or kwargs.get("cache") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if kwargs.get("softcap"):
        # enable() refuses such models; reaching here would silently attend across examples.
        raise RuntimeError("packed attention does not implement attention-logit softcapping")
    window = kwargs.get("sliding_window")
    B, H, L, D = query.shape
    Hkv = key.shape[1]
    q = query.transpose(1, 2).reshape(B * L, H, D)
    k = key.transpose(1, 2).reshape(B * L, Hkv, D)
    v = value.transpose(1, 2).reshape(B * L, Hkv, value.shape[-1])
    outs = []
    for g in segs.groups:
        idx = g.index.reshape(-1)
        qg = q.index_select(0, idx).view(g.n, g.width, H, D).transpose(1, 2)
        kg = k.index_select(0, idx).view(g.n, g.width, Hkv, D).transpose(1, 2)
        vg = v.index_select(0, idx).view(g.n, g.width, Hkv, -1).transpose(1, 2)
        if window and window < g.width:
            # A sliding-window layer: key j is visible from query i when i - window < j <= i, counted
            # from the example's own first token (transformers' sliding_window_overlay).
            pos = torch.arange(g.width, device=qg.device)
            band = (pos[None, :] <= pos[:, None]) & (pos[None, :] > pos[:, None] - window)
            og = F.scaled_dot_product_attention(
                qg, kg, vg, attn_mask=band, dropout_p=dropout, scale=scaling, enable_gqa=H != Hkv
            )
        else:
            og = F.scaled_dot_product_attention(
                qg, kg, vg, dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=H != Hkv
            )
        outs.append(og.transpose(1, 2).reshape(g.n * g.width, H, -1).index_select(0, g.keep))
    flat = torch.cat(outs)
    out = flat.new_zeros(B * L, H, flat.shape[-1]).index_copy(0, segs.dest, flat)
    return out.view(B, L, H, -1), None


def packed_mask(*args, **kwargs):
    """No dense mask while segments are active: packed_attention_forward does not read it."""
    if _active.get() is not None:
        return None
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(NAME, packed_attention_forward)
AttentionMaskInterface.register(NAME, packed_mask)


def enable(model) -> bool:
    """Switch a model to packed attention; False (and plain SDPA masks) where the model cannot."""
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "get_text_config", lambda: cfg)() if cfg is not None else None
    if getattr(cfg, "attn_logit_softcapping", None):
        # Softcapped logits (Gemma 2) need an eager score pass that SDPA cannot express.
        log.warning(
            "packed attention unavailable for %s (attention-logit softcapping); using masked SDPA",
            type(model).__name__,
        )
        return False
    try:
        model.set_attn_implementation(NAME)
    except Exception as exc:  # a model that does not dispatch through the attention interface
        log.warning("packed attention unavailable for %s (%s); using masked SDPA", type(model).__name__, exc)
        return False
    return True
