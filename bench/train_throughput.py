"""Training throughput: our arena trainer against the HF Trainer, same hero, same data. Prints JSON.

    .venv/bin/python bench/train_throughput.py [--examples 3000] [--threads 2]

Both train DIO (built with the same seed) for one epoch over the same BIN-like chats
("Compute: add(①⓪, ①①)" -> "①⓪①"), loss on the assistant tokens only:
- ours: the real daemon (`ArenaDaemon`, in-process, default training config: 16 packed rows of 256
  tokens per step), timed from battle.start to its last step event;
- HF Trainer: DataCollatorForSeq2Seq (pads each batch to its longest example, labels -100 on
  padding), per_device_train_batch_size 16 (its usual setting), and again with the batch size
  that gives it as many examples per step as ours, timed by its own train_runtime.
Throughput counts non-padding tokens only. Efficiency: model FLOPs/s (6 x params x tokens/s) as a
fraction of a measured fp32 matmul peak (torch.mm, 1024^3, same threads) on this machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def ours(records: list[dict], tmp: Path) -> dict:
    import yaml

    from arena.daemon import ArenaDaemon
    from arena.queue import QuestQueue
    from realm import Realm

    home = tmp / "ours"
    home.mkdir()
    cfg = {
        "training": {
            "save_steps": 100000,
            "eval_every": 100000,
            "val_fraction": 0.01,
            "event_interval_s": 0.5,
        }
    }
    (home / "realm.yaml").write_text(yaml.safe_dump(cfg))
    realm = Realm.open(home)
    realm.init()
    src = home / "bench.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    QuestQueue(realm.home, realm.store, realm.events).enqueue(src, name="bench.jsonl", spec="chat_sft_v1")
    ArenaDaemon(realm, until_idle=True).run()
    evs = realm.events.since(0, limit=100000)
    start = next(e for e in evs if e.kind == "battle.start")
    last_step = [e for e in evs if e.kind == "step"][-1]
    state = json.loads(next((home / "models").iterdir()).joinpath("trainer_state.json").read_text())
    secs = last_step.ts - start.ts
    return {
        "tokens": state["tokens_trained"],
        "examples": state["examples_trained"],
        "steps": state["step"],
        "seconds": round(secs, 2),
        "tokens_per_s": round(state["tokens_trained"] / secs, 1),
        "final_loss": last_step.payload["loss"],
    }


def hf_trainer(records: list[dict], tmp: Path, batch_size: int) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from arena.formatting import FormatStats, Formatter
    from arena.hero import build_hero
    from sentinels.config import HeroConfig, TrainingConfig

    tc = TrainingConfig()
    model, tok = build_hero(HeroConfig(), REPO, seed=tc.seed)
    fmt, st = Formatter(tok, max_length=tc.max_length, think_weight=0.0), FormatStats()
    data = []
    for r in records:
        ex = fmt.format(r, "chat_sft_v1", st)
        # Same loss as ours: assistant tokens only (HF shifts labels inside the model).
        data.append(
            {
                "input_ids": ex.ids,
                "labels": [i if w > 0 else -100 for i, w in zip(ex.ids, ex.weights, strict=True)],
            }
        )
    args = TrainingArguments(
        output_dir=str(tmp / f"hf{batch_size}"),
        per_device_train_batch_size=batch_size,
        num_train_epochs=1,
        learning_rate=tc.learning_rate,
        warmup_steps=tc.warmup_steps,
        weight_decay=tc.weight_decay,
        max_grad_norm=tc.max_grad_norm,
        lr_scheduler_type="cosine",
        save_strategy="no",
        report_to=[],
        logging_steps=50,
        use_cpu=True,
        seed=tc.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator)
    out = trainer.train()
    tokens = sum(len(d["input_ids"]) for d in data)
    secs = out.metrics["train_runtime"]
    return {
        "batch_size": batch_size,
        "tokens": tokens,
        "examples": len(data),
        "steps": out.global_step,
        "seconds": round(secs, 2),
        "tokens_per_s": round(tokens / secs, 1),
        "final_loss": round(out.training_loss, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(a.threads)
    from tests.test_trainer import bin_chats

    records = bin_chats(a.examples, seed=0, bits=7)
    from arena.hero import build_hero, count_params
    from sentinels.config import HeroConfig

    params = count_params(build_hero(HeroConfig(), REPO)[0])
    peak = matmul_peak()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        mine = ours(records, tmp)
        per_step = round(mine["examples"] / mine["steps"])
        hf_usual = hf_trainer(records, tmp, 16)
        hf_same = hf_trainer(records, tmp, per_step)
    mfu = 6 * params * mine["tokens_per_s"] / peak
    print(
        json.dumps(
            {
                "machine": {"threads": a.threads, "fp32_matmul_peak_gflops": round(peak / 1e9, 1)},
                "hero_params": params,
                "examples": a.examples,
                "ours": mine,
                "hf_trainer_bs16": hf_usual,
                f"hf_trainer_bs{per_step}": hf_same,
                "speedup_vs_hf_bs16": round(mine["tokens_per_s"] / hf_usual["tokens_per_s"], 2),
                f"speedup_vs_hf_bs{per_step}": round(mine["tokens_per_s"] / hf_same["tokens_per_s"], 2),
                "model_flops_per_s": round(6 * params * mine["tokens_per_s"] / 1e9, 2),
                "mfu_vs_matmul_peak": round(mfu, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
