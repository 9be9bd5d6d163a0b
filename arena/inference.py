"""Inference on a hero checkpoint: loading it, and generating from it, for the guild's evals and the Oracle.

Both users of a trained hero go through here, so a checkpoint is read and a prompt is rendered the same
way everywhere:
- `load_checkpoint_hero(path)`: (model, tokenizer) from a checkpoint folder with plain transformers
  (an adapter checkpoint: its base plus the adapter through peft, arena.adapters);
  `read_weights` / `swap_weights` put another checkpoint's tensors into an already-built model of the
  same architecture (`architecture_key`), which is how the Oracle switches checkpoints without
  building a model.
- `chat_prompt_ids` renders messages with the checkpoint's own chat template; `left_pad` lines a batch
  of prompts up so every row's last prompt token sits at the same position (the KV cache then serves
  every row with one forward per new token).
- `make_generate_fn`: batched greedy generation for eval hooks (prompts -> responses).
- `ThinkBudget`: a logits processor that closes a `<think>` part once it has used its token budget.

Nothing here imports the trainer: the Oracle process must not pay for it (tests check).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("realm.inference")

GenerateFn = Callable[..., list[str]]  # (prompts, max_new_tokens=None) -> responses

# config.json keys that name or date a checkpoint without changing the tensors it needs.
_NON_ARCH_KEYS = {"_name_or_path", "transformers_version", "dtype", "torch_dtype", "use_cache"}


class WeightsMismatch(ValueError):
    """A checkpoint's tensors do not fit the model they were to be swapped into."""


def ensure_pad(tokenizer):
    # Batched generation and padding need a pad token; models without one pad with eos, which is
    # safe because padded positions are masked out of attention and loss.
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_checkpoint_hero(path: Path, *, device: torch.device | str | None = None, dtype=torch.float32):
    """(model, tokenizer) from a checkpoint folder, exactly as any HF user would load it: a full
    checkpoint with `from_pretrained`, an adapter checkpoint (adapter_config.json) as a peft model
    on its base (arena.adapters), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arena import adapters  # here, not at the top: adapters imports this module

    if adapters.is_adapter_checkpoint(path):
        return adapters.load_adapter_hero(Path(path), device=device, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if device is not None:
        model.to(device)
    return model, ensure_pad(tokenizer)


def pick_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """The device and dtype to serve on: the first GPU and bf16 where the host has them, else the CPU
    in fp32 (bf16 matmuls on a CPU are slower than fp32 ones)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dtype == "auto":
        bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
        return dev, torch.bfloat16 if bf16 else torch.float32
    return dev, {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def architecture_key(path: Path) -> str:
    """What two checkpoints must share for one's weights to be swapped into the other's model: their
    config.json less the keys that only name or date it."""
    cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    return json.dumps({k: v for k, v in cfg.items() if k not in _NON_ARCH_KEYS}, sort_keys=True)


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint (one file, or the shards its index names)."""
    path = Path(path)
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
        return [path / name for name in sorted(set(shards))]
    raise WeightsMismatch(f"{path}: no model.safetensors (or index) to read weights from")


def read_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in weight_files(path):
        out.update(load_file(str(f), device=str(device)))
    return out


@torch.no_grad()
def swap_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a checkpoint's tensors into `model` in place (device and dtype kept).

    Keys the file leaves out must be tied to one it has (an lm_head tied to the embeddings is saved
    once); anything else missing or unexpected means another architecture, and nothing is copied."""
    params = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers())
    unexpected = sorted(set(state) - set(params))
    saved_ptrs = {params[k].data_ptr() for k in state if k in params}
    missing = sorted(k for k in params if k not in state and params[k].data_ptr() not in saved_ptrs)
    # Buffers a model computes itself (rotary inv_freq) are never saved; only parameters must match.
    missing = [k for k in missing if k in dict(model.named_parameters(remove_duplicate=False))]
    if unexpected or missing:
        raise WeightsMismatch(f"weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, t in state.items():
        if params[k].shape != t.shape:
            raise WeightsMismatch(f"{k}: shape {tuple(t.shape)} does not fit {tuple(params[k].shape)}")
    for k, t in state.items():
        params[k].copy_(t)


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of an OpenAI content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def chat_prompt_ids(tokenizer, messages: Sequence[dict[str, Any]], **template_kwargs: Any) -> list[int]:
    """Token ids of `messages` rendered by the checkpoint's own chat template, ready for the reply."""
    msgs = [{"role": m["role"], "content": message_text(m.get("content"))} for m in messages]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **template_kwargs)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every row right-aligned, so the last prompt tokens line up."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, seq in enumerate(rows):
        if seq:
            ids[i, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[i, width - len(seq) :] = 1
    return ids, mask


def make_generate_fn(
    model: torch.nn.Module, tokenizer, *, max_new_tokens: int = 64, batch_size: int = 64
) -> GenerateFn:
    """Batched greedy generation: user prompts -> assistant responses, via the chat template.

    Prompts are sorted by length and run in batches, left-padded so every row's last prompt token
    sits at the same position, with the KV cache on (`generate` reuses it): each new token costs one
    forward over one position per row. The model's train/eval mode is restored afterwards.
    """

    default_budget = max_new_tokens

    @torch.no_grad()
    def generate(prompts: list[str], max_new_tokens: int | None = None) -> list[str]:
        """Responses to `prompts`; `max_new_tokens` overrides the budget for this call."""
        budget = max_new_tokens or default_budget
        if not prompts:
            return []
        encoded = [chat_prompt_ids(tokenizer, [{"role": "user", "content": p}]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        out: list[str] = [""] * len(prompts)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        pad = tokenizer.pad_token_id
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                ids, mask = left_pad([encoded[i] for i in idx], pad)
                gen = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=budget,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=pad,
                    eos_token_id=tokenizer.eos_token_id,
                )
                width = ids.shape[1]
                for row, i in enumerate(idx):
                    out[i] = tokenizer.decode(gen[row, width:], skip_special_tokens=True).strip()
        finally:
            model.train(was_training)
        return out

    return generate


class ThinkBudget:
    """A logits processor that ends each row's `<think>` part after `budgets[row]` tokens.

    It follows each row's tokens (prompt included, so a template that opens `<think>` itself counts):
    once the open part holds `budget` tokens after the tag, the next steps are forced to `</think>`'s
    tokens (every other logit set to -inf), and the model then writes its answer. A budget of None
    leaves the row alone. Tags may be any number of tokens long."""

    def __init__(self, tokenizer, budgets: Sequence[int | None], open_tag="<think>", close_tag="</think>"):
        self.open = tokenizer(open_tag, add_special_tokens=False)["input_ids"]
        self.close = tokenizer(close_tag, add_special_tokens=False)["input_ids"]
        self.budgets = list(budgets)
        n = len(self.budgets)
        self.inside = [False] * n
        self.used = [0] * n  # tokens inside the open part, after the tag
        self.forcing = [0] * n  # how many of close's tokens were forced so far
        self.cut = [False] * n  # whether the budget ever cut this row's thinking
        self.seen = 0  # columns of input_ids already followed

    def _ends_with(self, ids: list[int], at: int, tag: list[int]) -> bool:
        return at + 1 >= len(tag) and ids[at + 1 - len(tag) : at + 1] == tag

    def _follow(self, row: int, ids: list[int], start: int) -> None:
        for at in range(start, len(ids)):
            if self.inside[row]:
                self.used[row] += 1
                if self._ends_with(ids, at, self.close):
                    self.inside[row], self.used[row], self.forcing[row] = False, 0, 0
            elif self._ends_with(ids, at, self.open):
                self.inside[row], self.used[row] = True, 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # Only the new columns are followed, with enough old ones before them to match a tag.
        back = min(self.seen, max(len(self.open), len(self.close)))
        rows = input_ids[:, self.seen - back :].tolist()
        for r, ids in enumerate(rows):
            if self.budgets[r] is not None:
                self._follow(r, ids, back)
        self.seen = input_ids.shape[1]
        for r, budget in enumerate(self.budgets):
            if budget is None or not self.inside[r]:
                continue
            if (self.forcing[r] or self.used[r] >= budget) and self.forcing[r] < len(self.close):
                forced = self.close[self.forcing[r]]
                scores[r, :] = float("-inf")
                scores[r, forced] = 0.0
                self.forcing[r] += 1
                self.cut[r] = True
        return scores
