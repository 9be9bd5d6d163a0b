"""GPU hero bench: a Qwen3-0.6B-shaped hero trained by our arena trainer and by the HF Trainer. Prints JSON.

    .venv/bin/python bench/gpu_hero.py              # CUDA: the Qwen3-0.6B shape, bf16 (a few minutes)
    .venv/bin/python bench/gpu_hero.py --tiny       # the CI shape, the default on a CPU (< 60 s)
    .venv/bin/python bench/gpu_hero.py --out FILE   # also write the JSON to FILE

What runs, in one process, on the same data (issue #17, "bench/gpu_hero.py"):
- The hero: `Qwen3ForCausalLM` randomly initialised from a config (nothing downloaded), saved with
  `save_pretrained` into a temporary folder with DIO's byte-level tokenizer. The full shape is
  Qwen3-0.6B's (hidden 1024, 28 layers, 16 heads, 8 KV heads, head_dim 128, MLP 3072, vocabulary
  151,936, tied embeddings, rope_theta 1e6); the text uses a handful of its ids, which changes no
  FLOP. `--tiny` (CI): hidden 64, 2 layers, vocabulary 384, fp32.
- The data: synthetic `completion_v1` texts (loss on every token, so both trainers run the lm_head on
  the same positions), lengths log-uniform between --min-len and --max-len tokens, seeded.
- Ours: the real `ArenaDaemon` in-process with `hero.base_model` = that folder and `hero.profile: full`,
  `training.precision: bf16` on CUDA (the accelerator's bf16 autocast over fp32 weights), one flat
  packed row of batch_size x max_length tokens a step, per-example attention, val_fraction 0.
- HF Trainer: the same folder loaded with `from_pretrained` (fp32 weights, `bf16=True` on CUDA: the
  same autocast), the same token ids (labels = ids), `DataCollatorForSeq2Seq` padding each batch to
  its longest example, per_device_train_batch_size = batch_size (rows of max_length: at most as many
  tokens a step as ours), its default optimizer, the same learning rate, warmup, decay and clipping.
- Timing: each trainer's window runs from the end of its first optimizer step (warm-up: CUDA
  context, allocator, kernel choice) to the end of its last, with the device finished at both ends
  (our step events are written after the step's loss is read from the device; the HF callback
  synchronises). Tokens/s counts the non-padding tokens trained in that window.
- Peak: `torch.mm` of 8192^3 in bf16 on CUDA (fp32 1024^3 on a CPU), best of 5 timings before the
  runs and 5 after. MFU = 6 x params x tokens/s over that peak (tied embeddings counted once: the
  lm_head matmul is counted, the embedding lookup is not); also with attention FLOPs (PaLM's
  convention, bench/train_throughput.attention_flops).
- Targets (#17, an H100-class GPU): ours >= 1.2x the HF Trainer's tokens/s and MFU >= 45%. Pass or
  fail is evaluated only on CUDA with the full shape; elsewhere it is null.

Owns nothing the realm uses: it writes only inside a temporary folder, and must not touch a realm home.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.train_throughput import attention_flops, matmul_peak  # noqa: E402

log = logging.getLogger("bench.gpu_hero")

# Qwen3-0.6B's architecture (its config.json), for a randomly initialised hero.
QWEN3_0_6B = {
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 3072,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "rope_theta": 1_000_000.0,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
}
TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 192,
    "vocab_size": 384,  # DIO's byte tokenizer (274 ids) rounded up to a multiple of 64
    "tie_word_embeddings": True,
    "rope_theta": 1_000_000.0,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
}
# Per shape: examples, shortest and longest example (tokens), rows of max_length per step, max_length.
DEFAULTS = {
    "qwen3-0.6b": {"examples": 1536, "min_len": 128, "max_len": 2048, "batch_size": 8, "max_length": 2048},
    "tiny": {"examples": 96, "min_len": 16, "max_len": 256, "batch_size": 4, "max_length": 256},
}
TARGETS = {"speedup_vs_hf": 1.2, "mfu": 0.45}
LEARNING_RATE, WARMUP_STEPS = 1e-4, 10
TEXT = "abcdefghijklmnopqrstuvwxyz     "  # one byte-level token per character; spaces make words


# ---- the machine --------------------------------------------------------------------------------
def cuda_matmul_peak(n: int = 8192, reps: int = 10, trials: int = 5) -> float:
    """The best of `trials` timings of `reps` bf16 n^3 matmuls on the GPU, timed by CUDA events: a
    peak is the card at its best, so noise can only lower it, never flatter the MFU quoted."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b, out=c)
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(trials):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        end.record()
        end.synchronize()
        best = max(best, 2 * n**3 * reps / (start.elapsed_time(end) / 1000))
    del a, b, c
    torch.cuda.empty_cache()
    return best


def peak(cuda: bool) -> float:
    # On a CPU, 5 matmuls a timing (not 20): the CI shape's MFU is a smoke test, and CI waits.
    return cuda_matmul_peak() if cuda else matmul_peak(reps=5)


def device_info(cuda: bool) -> dict:
    info = {"type": "cuda" if cuda else "cpu", "torch": torch.__version__}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info |= {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
        }
    else:
        info |= {"name": "cpu", "threads": torch.get_num_threads()}
    return info


def sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def free(cuda: bool) -> None:
    """Drop the last trainer's model and optimizer before the next one loads its own."""
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(cuda: bool) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None


# ---- the hero and the data ----------------------------------------------------------------------
def build_folder(folder: Path, shape: dict, seed: int, cuda: bool) -> int:
    """A randomly initialised Qwen3 hero of `shape` with DIO's byte tokenizer, saved as an HF folder;
    its parameter count (tied embeddings once)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from arena.hero import HeroSpec, byte_tokenizer

    tok = byte_tokenizer(HeroSpec.read(REPO / "configs" / "heroes" / "dio.yaml").tokenizer)
    if shape["vocab_size"] < len(tok):
        raise SystemExit(
            f"gpu_hero: vocab_size {shape['vocab_size']} is below the tokenizer's {len(tok)} ids"
        )
    config = Qwen3Config(
        **shape,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    # Initialised on the GPU when there is one: 0.6B parameters initialise in seconds there.
    with torch.device("cuda" if cuda else "cpu"):
        model = Qwen3ForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    del model
    free(cuda)
    return params


def synth_records(n: int, min_len: int, max_len: int, seed: int) -> list[dict]:
    """n texts of log-uniform length in [min_len, max_len] tokens (the formatter adds the eos)."""
    rng = random.Random(seed)
    lo, hi = math.log(min_len), math.log(max_len)
    out = []
    for _ in range(n):
        length = max(2, min(max_len, round(math.exp(rng.uniform(lo, hi)))))
        out.append({"text": "".join(rng.choices(TEXT, k=length - 1))})
    return out


def tokenize(folder: Path, records: list[dict], max_length: int) -> list:
    """The examples exactly as the arena formats them (its Formatter, on the folder's tokenizer)."""
    from transformers import AutoTokenizer

    from arena.formatting import FormatStats, Formatter

    tok = AutoTokenizer.from_pretrained(folder)
    fmt = Formatter(tok, max_length=max_length, think_weight=0.0, overlong="refuse")
    stats = FormatStats()
    examples = [fmt.format(r, "completion_v1", stats) for r in records]
    if any(ex is None for ex in examples):
        raise SystemExit(f"gpu_hero: {stats.bad} synthetic records did not format: {stats.errors[:3]}")
    return examples


# ---- ours ---------------------------------------------------------------------------------------
def ours(folder: Path, records: list[dict], tmp: Path, a, cuda: bool) -> dict:
    import yaml

    from arena.daemon import ArenaDaemon
    from arena.queue import QuestQueue
    from sentinels.realm import Realm

    home = tmp / "ours"
    home.mkdir()
    cfg = {
        "hero": {"name": "bench-hero", "base_model": str(folder), "profile": "full"},
        "training": {
            "batch_size": a.batch_size,
            "max_length": a.max_length,
            "precision": "bf16" if cuda else "fp32",
            "learning_rate": LEARNING_RATE,
            "warmup_steps": WARMUP_STEPS,
            "seed": a.seed,
            "save_steps": 10**6,
            "eval_every": 10**6,
            "keep_last": 1,
            "val_fraction": 0.0,  # train on every example, as the HF Trainer does
            "overlong": "refuse",
            "event_interval_s": 0.5,
        },
    }
    (home / "realm.yaml").write_text(yaml.safe_dump(cfg))
    realm = Realm.open(home)
    realm.init()
    src = home / "bench.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    QuestQueue(realm.home, realm.store, realm.events).enqueue(src, name="bench.jsonl", spec="completion_v1")
    ArenaDaemon(realm, until_idle=True).run()
    evs = realm.events.since(0, limit=100000)
    start = next(e for e in evs if e.kind == "battle.start")
    steps = [e for e in evs if e.kind == "step"]
    first, last = steps[0], steps[-1]  # the battle's first and last steps always report
    # The battle's end checkpoint (keep_last 1): the one folder with a trainer_state.json.
    (saved,) = [p for p in (home / "models").iterdir() if (p / "trainer_state.json").is_file()]
    state = json.loads((saved / "trainer_state.json").read_text())
    realm.store.close()
    secs = last.ts - first.ts
    tokens = last.payload["tokens"] - first.payload["tokens"]
    return {
        "tokens": state["tokens_trained"],
        "examples": state["examples_trained"],
        "steps": state["step"],
        "step_tokens": a.batch_size * a.max_length,
        "timed": {
            "steps": last.payload["step"] - first.payload["step"],
            "tokens": tokens,
            "seconds": round(secs, 3),
            "tokens_per_s": round(tokens / secs, 1) if secs > 0 else None,
        },
        "whole_battle_tokens_per_s": round(state["tokens_trained"] / max(last.ts - start.ts, 1e-9), 1),
        "final_loss": last.payload["loss"],
        "peak_memory_gib": peak_memory_gib(cuda),
    }


# ---- the HF Trainer -----------------------------------------------------------------------------
def hf_trainer(folder: Path, examples: list, tmp: Path, a, cuda: bool) -> dict:
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from sentinels.config import TrainingConfig

    tc = TrainingConfig()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    # Loss on every token but each example's last, as ours (HF shifts the labels inside the model).
    data = [{"input_ids": ex.ids, "labels": list(ex.ids)} for ex in examples]
    pad = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    batch_tokens: list[int] = []  # non-padding tokens per batch, in the order the loop takes them
    padded = 0

    def collator(features):
        nonlocal padded
        batch = pad(features)
        batch_tokens.append(sum(len(f["input_ids"]) for f in features))
        padded += batch["input_ids"].numel()  # what the model computes on, padding included
        return batch

    class Clock(TrainerCallback):
        """The device's time at the end of the first and the last optimizer step."""

        def __init__(self):
            self.marks: dict[str, float] = {}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (1, state.max_steps):
                sync(cuda)
                self.marks["first" if state.global_step == 1 else "last"] = time.perf_counter()

    clock = Clock()
    args = TrainingArguments(
        output_dir=str(tmp / "hf"),
        per_device_train_batch_size=a.batch_size,
        num_train_epochs=1,
        learning_rate=LEARNING_RATE,
        warmup_steps=WARMUP_STEPS,
        weight_decay=tc.weight_decay,
        adam_beta2=0.95,  # ours: betas (0.9, 0.95)
        max_grad_norm=tc.max_grad_norm,
        lr_scheduler_type="cosine",
        save_strategy="no",
        report_to=[],
        logging_steps=10**6,  # its loss is read from the device only at logging steps
        use_cpu=not cuda,
        bf16=cuda,
        seed=a.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator, callbacks=[clock])
    with contextlib.redirect_stdout(sys.stderr):  # its metric dicts; stdout is the JSON
        out = trainer.train()
    tokens = sum(len(d["input_ids"]) for d in data)
    # One step only: no window after the warm-up step, so no rate (as for ours).
    secs = clock.marks["last"] - clock.marks["first"] if "last" in clock.marks else 0.0
    timed = tokens - batch_tokens[0]  # every batch but the first (the warm-up step)
    res = {
        "batch_size": a.batch_size,
        "optim": str(args.optim.value if hasattr(args.optim, "value") else args.optim),
        "tokens": tokens,
        "padded_tokens": padded,
        "padding_share": round(1 - tokens / padded, 3) if padded else None,
        "examples": len(data),
        "steps": out.global_step,
        "timed": {
            "steps": out.global_step - 1,
            "tokens": timed,
            "seconds": round(secs, 3),
            "tokens_per_s": round(timed / secs, 1) if secs > 0 else None,
        },
        "whole_run_tokens_per_s": round(tokens / out.metrics["train_runtime"], 1),
        "final_loss": round(out.training_loss, 4),
        "peak_memory_gib": peak_memory_gib(cuda),
    }
    del trainer, model
    return res


# ---- the run ------------------------------------------------------------------------------------
def mfu(params: int, attn_per_token: float, tokens_per_s: float | None, peak_flops: float) -> dict:
    if not tokens_per_s:
        return {"mfu": None, "mfu_with_attention": None}
    return {
        "model_tflops_per_s": round(6 * params * tokens_per_s / 1e12, 4),
        "mfu": round(6 * params * tokens_per_s / peak_flops, 4),
        "mfu_with_attention": round((6 * params + attn_per_token) * tokens_per_s / peak_flops, 4),
    }


def verdict(measured: float | None, target: float, evaluated: bool) -> dict:
    ok = None if not evaluated or measured is None else measured >= target
    return {"target": target, "measured": measured, "pass": ok}


def parse_args(argv: list[str] | None = None, cuda: bool = False) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the CI shape (always on a CPU)")
    ap.add_argument("--examples", type=int, help="synthetic examples (default: per shape)")
    ap.add_argument("--min-len", type=int, help="shortest example in tokens")
    ap.add_argument("--max-len", type=int, help="longest example in tokens")
    ap.add_argument("--batch-size", type=int, help="rows of max_length a step (HF: examples a batch)")
    ap.add_argument("--max-length", type=int, help="row length in tokens (ours: training.max_length)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    a = ap.parse_args(argv)
    a.shape = "tiny" if a.tiny or not cuda else "qwen3-0.6b"
    for key, value in DEFAULTS[a.shape].items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if not 2 <= a.min_len <= a.max_len <= a.max_length:
        ap.error(
            f"need 2 <= --min-len ({a.min_len}) <= --max-len ({a.max_len}) <= --max-length ({a.max_length})"
        )
    return a


def main(argv: list[str] | None = None) -> None:
    from transformers import Qwen3Config

    cuda = torch.cuda.is_available()
    a = parse_args(argv, cuda)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[%(name)s] %(message)s")
    log.setLevel(logging.INFO)  # this bench's progress; the libraries' chatter stays at warnings
    shape = QWEN3_0_6B if a.shape == "qwen3-0.6b" else TINY
    out: dict = {"device": device_info(cuda)}
    peak_flops = peak(cuda)
    with tempfile.TemporaryDirectory(prefix="gpu_hero-") as d:
        tmp = Path(d)
        folder = tmp / "hero"
        params = build_folder(folder, shape, a.seed, cuda)
        records = synth_records(a.examples, a.min_len, a.max_len, a.seed)
        examples = tokenize(folder, records, a.max_length)
        lengths = sorted(len(ex) for ex in examples)
        attn = attention_flops(lengths, Qwen3Config(**shape))
        log.info(
            "%s hero, %s parameters, %s tokens on %s",
            a.shape,
            f"{params:,}",
            f"{sum(lengths):,}",
            out["device"]["name"],
        )
        mine = ours(folder, records, tmp, a, cuda)
        free(cuda)
        log.info("ours: %s tokens/s", mine["timed"]["tokens_per_s"])
        hf = hf_trainer(folder, examples, tmp, a, cuda)
        free(cuda)
        log.info("HF Trainer: %s tokens/s", hf["timed"]["tokens_per_s"])
    # Peak again after the runs: the best of both, so a slow start cannot flatter the MFU.
    peak_flops = max(peak_flops, peak(cuda))
    attn_per_token = attn / sum(lengths)
    out["device"] |= {
        "matmul_peak_tflops": round(peak_flops / 1e12, 4),
        "matmul_peak": "torch.mm bf16 8192^3 (10 a timing), best of 5 x 2"
        if cuda
        else "torch.mm fp32 1024^3 (5 a timing), best of 5 x 2",
    }
    out["hero"] = {
        "shape": a.shape,
        "config": shape,
        "params": params,
        "precision": "bf16 autocast, fp32 weights" if cuda else "fp32",
        "profile": "full",
    }
    out["data"] = {
        "examples": len(lengths),
        "tokens": sum(lengths),
        "tokens_per_example": {
            "min": lengths[0],
            "median": lengths[len(lengths) // 2],
            "mean": round(sum(lengths) / len(lengths), 1),
            "max": lengths[-1],
        },
        "attention_training_flops": attn,
        "seed": a.seed,
    }
    mine |= mfu(params, attn_per_token, mine["timed"]["tokens_per_s"], peak_flops)
    hf |= mfu(params, attn_per_token, hf["timed"]["tokens_per_s"], peak_flops)
    out["ours"], out["hf_trainer"] = mine, hf
    ratio = (
        round(mine["timed"]["tokens_per_s"] / hf["timed"]["tokens_per_s"], 3)
        if mine["timed"]["tokens_per_s"] and hf["timed"]["tokens_per_s"]
        else None
    )
    out["speedup_vs_hf"] = ratio
    evaluated = cuda and a.shape == "qwen3-0.6b"
    card = out["device"]["name"]
    out["targets"] = {
        "evaluated": evaluated,
        "why": f"a CUDA run of the Qwen3-0.6B shape on {card} (the targets are set for an H100-class GPU)"
        if evaluated
        else "the targets hold only a CUDA run of the Qwen3-0.6B shape; not evaluated here",
        "speedup_vs_hf": verdict(ratio, TARGETS["speedup_vs_hf"], evaluated),
        "mfu": verdict(mine.get("mfu"), TARGETS["mfu"], evaluated),
    }
    text = json.dumps(out, indent=2)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
