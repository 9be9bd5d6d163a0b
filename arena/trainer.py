"""The trainer: the hero, its optimizer and schedule, and the fit loop of one battle.

Plain PyTorch on 🤗 Accelerate: AdamW, linear warmup then cosine decay to a floor (continuous across
quests: the global step, optimizer and schedule persist), gradient accumulation, clipping, precision
from the config and a fixed seed. One quest is one battle: `epochs` passes over the file in a fixed
per-epoch order, packed rows, loss weighted per token (see arena.formatting) and normalised by the
total weight of the whole optimizer step across micro-steps and processes, so the gradient is the
same whatever the split into micro-batches and ranks.

Batch geometry: a micro-step holds batch_size * max_length tokens. With packed attention (the default,
arena.attention) that is ONE flat row of that many tokens, since each example attends within itself
whatever the row's width, and a flat row wastes at most the tail after its last whole example
(rows of max_length waste up to one example per row: 11% on ~57-token BIN chats). Without it, it
is batch_size rows of max_length. Each optimizer step takes grad_accum * num_processes micro-steps;
every rank packs the same stream and takes its own slice, so a 2-process run sees the same global
batch as a 1-process run with twice the accumulation. Only rank 0 writes (events, checkpoints, ledger, quest
progress); rank 0 also reads battle commands and broadcasts them.

All resumable loop state is in `LoopState` and goes into every checkpoint's trainer_state.json,
with the format it was written in. `LoopState.from_dict` reads any earlier format: it maps renamed
fields (RENAMES), defaults missing ones and drops unknown ones with a warning, so a renamed field
never strands the checkpoints written before it (litgpt reads old metadata the same way).

Preemption (arena.preempt; the daemon decides, arena.queue owns the rule) keeps the loop state rather
than checkpointing: `poll` answers "preempt" between steps, `fight` returns "preempted" at once, and
the next `begin` files the unfinished quest under `LoopState.suspended` at the (epoch, offset) it
reached. Every example before that offset is in the weights in memory and none after it, and each
checkpoint saves `suspended` together with those weights, so after a crash every quest resumes at the
offset matching the weights it restarts from: no example trained twice into the kept weights, none
skipped. A checkpoint per switch would give the same guarantee, but costs a validation pass, the
checkpoint hook's evals and a retention slot for every drop, which is seconds on this box.
Each step event records what it trained: `span` = [epoch, start, end], positions start..end-1 of that
epoch's fixed order (`QuestData.epoch_order`).

The hero comes from arena.hero (`make_hero`: DIO, or a model folder under its memory profile) or, on
resume, from the latest checkpoint: a full one as saved, an adapter one as a trainable peft model on
its base (arena.adapters). The optimizer holds the trainable parameters only, in `named_parameters`
order, so a resumed run's groups match the saved state; each checkpoint's sidecar names the preset,
profile and base (arena.checkpoints.hero_mapping), and `hero()` reports them with trainable/total.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from arena import adapters, attention
from arena.checkpoints import Checkpoint, CheckpointManager, crash_point, hero_mapping
from arena.formatting import Example, Formatter, QuestData, read_quest
from arena.hero import FixedProfile, make_hero
from arena.inference import load_checkpoint_hero, make_generate_fn
from arena.packing import Row, collate, dummy_row, pack
from arena.reporting import Reporter, hero_stats

log = logging.getLogger("realm.trainer")

Poll = Callable[[], str | None]  # between steps: None, "stop", "skip" or "preempt" (pause is handled inside)
EvalHook = Callable[[Callable[[list[str]], list[str]], int], Any]


# trainer_state.json formats: 1 (no "format" key) had `recent`; 2 calls it `recent_losses`, since
# elsewhere in the realm "recent" means recent eval accuracies; 3 adds `suspended`, written only when a
# quest is suspended, so a checkpoint without one reads the same in a format-2 realm.
STATE_FORMAT = 3
RENAMES: dict[str, str] = {"recent": "recent_losses"}  # old name -> current name, across all formats
OPTIONAL = {"suspended"}  # fields a checkpoint leaves out while empty (never reported missing)


@dataclass
class LoopState:
    step: int = 0
    examples_trained: int = 0
    tokens_trained: int = 0
    completed_quests: int = 0
    quest_id: int | None = None
    quest_epoch: int = 0
    quest_offset: int = 0
    quest_done: bool = False
    train_loss: float | None = None
    val_loss: float | None = None
    recent_losses: list[float] = field(default_factory=list)  # last step losses, for a smooth train_loss
    # Quests preempted mid-battle: str(quest id) -> [epoch, offset] reached (their prefix is in the weights).
    suspended: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """What trainer_state.json holds: the fields and the format they are written in."""
        data = asdict(self)
        for name in OPTIONAL:
            if not data[name]:
                del data[name]
        return {"format": STATE_FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "trainer_state.json") -> LoopState:
        """Read any format so far: renamed fields mapped, missing ones defaulted, unknown ones
        dropped with a warning (a newer realm's fields are not guessed at)."""
        data = dict(data)
        fmt = data.pop("format", 1)
        if not isinstance(fmt, int) or fmt > STATE_FORMAT:
            log.warning(
                "%s: format %r is newer than this realm's (%d); reading the fields it knows",
                source,
                fmt,
                STATE_FORMAT,
            )
        for old, new in RENAMES.items():
            if old in data:
                value = data.pop(old)
                data.setdefault(new, value)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            log.warning("%s: ignoring unknown loop-state fields %s", source, ", ".join(unknown))
        missing = sorted(known - set(data) - OPTIONAL)
        if missing:
            log.info(
                "%s: fields %s absent (format %s); using their defaults", source, ", ".join(missing), fmt
            )
        return cls(**{k: v for k, v in data.items() if k in known})


def lr_lambda(warmup: int, decay: int, floor: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, decay))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


class Trainer:
    def __init__(
        self,
        config,
        home,
        store,
        reporter: Reporter,
        accelerator,
        repo_root: Path,
        record_progress: Callable[[int, int, int], None] = lambda quest_id, offset, epoch: None,
        on_checkpoint: Callable[[Callable[..., list[str]], int, str], Any] | None = None,
    ):
        self.record_progress = record_progress  # QuestQueue.set_progress: called after each checkpoint
        self.on_checkpoint = on_checkpoint  # the daemon's hook (the guild's champion rule), rank 0 only
        self.cfg, self.hero_cfg = config.training, config.hero
        self.acc = accelerator
        self.reporter = reporter
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.main = accelerator.is_main_process
        cores = os.cpu_count() or 1
        torch.set_num_threads(self.cfg.threads or max(1, cores // self.world))
        self.ckpts = CheckpointManager.for_config(home.models, store, config)
        latest = self.ckpts.latest()
        random.seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)
        if latest is not None:
            model, self.tokenizer = self._resume_hero(latest)
            self.state = LoopState.from_dict(latest.loop_state(), str(latest.path / "trainer_state.json"))
            log.info("resuming from %s (step %d)", latest.name, self.state.step)
        else:
            hero = make_hero(self.hero_cfg, repo_root, seed=self.cfg.seed, device=accelerator.device)
            model, self.tokenizer, self.profile = hero.model, hero.tokenizer, hero.choice
            self.preset = hero.source.preset
            self.base_model = str(hero.source.path) if hero.source.kind == "folder" else None
            self.state = LoopState()
        self.vocab_size = model.config.vocab_size
        self.n_params = adapters.total_params(model)
        self.n_trainable = adapters.trainable_params(model)
        # Only the trainable parameters (the adapters under LoRA), in named_parameters order: a
        # resumed run rebuilds the same groups, which the saved optimizer state maps onto by index.
        opt = adapters.build_optimizer(model, self.cfg, self.hero_cfg, device=accelerator.device)
        # Not passed to accelerator.prepare: a prepared scheduler steps once per process per step.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            opt, lr_lambda(self.cfg.warmup_steps, self.cfg.decay_steps, self.cfg.min_lr_ratio)
        )
        if latest is not None and latest.ledger.get("has_optimizer"):
            ts = latest.tensors_state()
            opt.load_state_dict(ts["optimizer"])
            self.scheduler.load_state_dict(ts["scheduler"])
            torch.set_rng_state(ts["torch_rng"])
            random.setstate(ts["python_rng"])
        self.packed_attention = self.cfg.packed_attention and attention.enable(model)
        # A peft wrapper's forward takes **kwargs and passes them to the base: ask the base.
        inner = model.get_base_model() if adapters.is_peft(model) else model
        self.keep_logits = "logits_to_keep" in inspect.signature(inner.forward).parameters
        if self.packed_attention:
            self.row_tokens, self.rows_per_micro = self.cfg.batch_size * self.cfg.max_length, 1
        else:
            self.row_tokens, self.rows_per_micro = self.cfg.max_length, self.cfg.batch_size
        model.train()
        self.model, self.optimizer = accelerator.prepare(model, opt)
        self.cpu_bf16 = self._cpu_auto_bf16(store)
        self.formatter = Formatter(
            self.tokenizer,
            max_length=self.cfg.max_length,
            think_weight=self.cfg.think_weight,
            overlong=self.cfg.overlong,
        )
        self._speed: deque[tuple[float, int, int]] = deque(maxlen=20)  # (seconds, tokens, examples)
        # Step losses not yet read from the device (CUDA defers them to logged steps; see fight).
        self.defer_loss = accelerator.device.type == "cuda"
        self._pending_losses: list[float | torch.Tensor] = []

    def _resume_hero(self, latest: Checkpoint):
        """The hero of the latest checkpoint, ready to train on: a full checkpoint as it was saved, an
        adapter checkpoint as a trainable peft model on its base (the sidecar's base_model, else
        adapter_config.json's). The profile is the checkpoint's: a changed hero.profile would need a
        fresh hero, so it is logged, not applied."""
        side = latest.ledger.get("hero") or {}
        self.preset = side.get("preset", self.hero_cfg.preset)
        base = side.get("base_model", self.hero_cfg.base_model)
        self.base_model = str(Path(base).expanduser().resolve()) if base else None
        if adapters.is_adapter_checkpoint(latest.path):
            kind = side.get("profile") or "lora"
            model, tokenizer = adapters.load_adapter_hero(
                latest.path, device=self.acc.device, dtype=None, trainable=True, hero_cfg=self.hero_cfg
            )
            self.profile = FixedProfile(
                f"resumed from the {kind} adapter checkpoint {latest.name}", kind=kind
            )
        else:
            model, tokenizer = load_checkpoint_hero(latest.path)
            if self.hero_cfg.gradient_checkpointing:
                adapters.enable_checkpointing(model, adapters=False)
            self.profile = FixedProfile(f"resumed from the full checkpoint {latest.name}")
        if self.hero_cfg.profile not in ("auto", self.profile.kind):
            log.warning(
                "hero.profile %s ignored: %s holds a %s hero; a new profile needs a fresh hero",
                self.hero_cfg.profile,
                latest.name,
                self.profile.kind,
            )
        return model, tokenizer

    # ---- precision ---------------------------------------------------------------------------
    def _cpu_auto_bf16(self, store) -> bool:
        """`training.precision: auto` on a CPU: bf16 autocast where arena.precision's once-per-machine
        probe (kept in the home) found it faster, fp32 elsewhere. GPUs and explicit precisions keep
        the accelerator's mixed precision (arena/daemon.py)."""
        if self.cfg.precision != "auto" or not self.cfg.cpu_auto_bf16 or self.acc.device.type != "cpu":
            return False
        from arena import precision

        # Rank 0 probes and stores; the others read its result, so every rank trains alike.
        choice = precision.resolve_cpu_auto(store) if self.main else None
        self.acc.wait_for_everyone()
        choice = choice or precision.resolve_cpu_auto(store)
        log.info("training precision on CPU: %s (%s)", choice.dtype, choice.reason)
        return choice.bf16

    def _autocast(self):
        if self.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return self.acc.autocast()

    # ---- reading a quest ---------------------------------------------------------------------
    def load(self, quest) -> QuestData:
        return read_quest(
            quest.path,
            quest.spec,
            self.formatter,
            seed=self.cfg.seed,
            quest_id=quest.id,
            val_fraction=self.cfg.val_fraction,
        )

    def epochs(self, quest) -> int:
        """Passes over this quest: its sidecar's `epochs` when given (the guild sets it for idle
        quests, whose distinct problems are few), else training.epochs."""
        return int((quest.lineage or {}).get("epochs") or self.cfg.epochs)

    def begin(self, quest) -> None:
        """Point the loop state at a quest, unless it is the one the loop state is inside.

        Leaving an unfinished quest (preempted, or the checkpoint's quest after a crash while another
        one is claimed first) suspends it where it stands; a suspended quest resumes where it was."""
        s = self.state
        if s.quest_id == quest.id and not s.quest_done:
            return
        if s.quest_id is not None and not s.quest_done:
            s.suspended[str(s.quest_id)] = [s.quest_epoch, s.quest_offset]
        epoch, offset = s.suspended.pop(str(quest.id), (0, 0))
        s.quest_id, s.quest_epoch, s.quest_offset, s.quest_done = quest.id, epoch, offset, False

    # ---- one optimizer step ------------------------------------------------------------------
    def train_step(self, rows: list[Row], *, defer: bool = False) -> float | torch.Tensor:
        """One optimizer step over `rows`; the step's loss (weighted mean over its tokens).

        A float by default, which reads the device once (`.item()`: free on a CPU, a sync on CUDA).
        defer=True returns it as a 0-d tensor on the device and never waits for the device, so on
        CUDA the host queues the next step while this one runs; the caller converts at logged steps
        (`torch.stack(losses).tolist()`, one sync for all of them)."""
        B, W = self.rows_per_micro, self.world
        total_w = sum(r.weight for r in rows) or 1.0  # identical on every rank: all pack the same rows
        n_micro = max(1, math.ceil(len(rows) / (B * W)))
        pad = self.tokenizer.pad_token_id
        pin = self.acc.device.type == "cuda"  # page-locked host batches: non-blocking copies (packing)
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.acc.device)
        for i in range(n_micro):
            mine = rows[(i * W + self.rank) * B : (i * W + self.rank + 1) * B] or [dummy_row(pad)]
            # Left on the host: _weighted_loss plans on it, then copies it to the device.
            batch = collate(mine, pad, pin_memory=pin)
            # Gradients are all-reduced only on the last micro-step (DDP's no_sync for the others).
            sync = self.acc.no_sync(self.model) if i < n_micro - 1 else contextlib.nullcontext()
            with sync, self._autocast():
                weighted = self._weighted_loss(self.model, batch, mine)
                # DDP averages gradients over ranks; * W turns that average back into the sum.
                self.acc.backward(weighted / total_w * W)
            loss_sum += weighted.detach()
        crash_point("mid_step")
        if self.cfg.max_grad_norm > 0:
            self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if W > 1:
            loss_sum = self.acc.reduce(loss_sum, reduction="sum")
        if defer:
            return loss_sum / total_w
        return float(loss_sum) / total_w  # .item(): a sync point, once per step

    def _weighted_loss(self, model, batch: dict[str, torch.Tensor], rows: list[Row]) -> torch.Tensor:
        """Sum over tokens of weight x cross-entropy, on packed rows.

        Per-example attention where the model supports it (arena.attention), and logits only at
        the positions that carry loss (`logits_to_keep`): prompt tokens need no lm_head, which on a
        large-vocabulary hero (Qwen3-0.6B: 152k x 1024) is a quarter of the model's FLOPs.

        `batch` may be on the host (train_step) or already on the device (val_loss). From the host,
        the attention plan and the kept positions are computed there, before the copy: on a CUDA
        tensor `nonzero()` waits for the device. Every copy is non-blocking from pinned memory
        (packing.to_device), so a training step never synchronises the device here."""
        from arena.packing import to_device  # the batch's one way onto the device

        dev = self.acc.device
        segments = None
        if self.packed_attention:
            width = batch["input_ids"].shape[1]
            plan = attention.plan([r.lengths for r in rows], width)
            segments = attention.Segments(
                [
                    attention.Group(to_device(g.index, dev), to_device(g.keep, dev), g.n, g.width)
                    for g in plan.groups
                ],
                to_device(plan.dest, dev),
            )
        targets, weights = batch["targets"], batch["weights"]
        extra = {}
        if self.keep_logits:
            keep = weights.gt(0).any(0).nonzero().squeeze(1)  # positions with loss in any row
            targets, weights = targets[:, keep], weights[:, keep]
            extra["logits_to_keep"] = to_device(keep, dev)
        input_ids = to_device(batch["input_ids"], dev)
        if segments is not None:
            # Without a mask, transformers searches position_ids for packed sequences, and that
            # search's `.all()` reads the device: a sync per forward. An all-ones 2D mask skips it,
            # and changes nothing: arena.attention's mask function ignores it while segments are
            # active (no dense mask is built; the attention reads the segments).
            extra["attention_mask"] = torch.ones_like(input_ids, dtype=torch.bool)
        with attention.packed(segments):
            logits = model(
                input_ids=input_ids,
                position_ids=to_device(batch["position_ids"], dev),
                use_cache=False,
                **extra,
            ).logits
        targets, weights = to_device(targets, dev), to_device(weights, dev)
        ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
        return (ce * weights.flatten()).sum()

    @torch.no_grad()
    def val_loss(self, examples: list[Example]) -> float | None:
        examples = examples[: self.cfg.val_max_examples]
        if not examples:
            return None
        model = self.acc.unwrap_model(self.model)
        model.eval()
        total, weight = 0.0, 0.0
        rows = list(pack(examples, self.row_tokens))
        for i in range(0, len(rows), self.rows_per_micro):
            mine = rows[i : i + self.rows_per_micro]
            batch = {k: v.to(self.acc.device) for k, v in collate(mine, self.tokenizer.pad_token_id).items()}
            total += float(self._weighted_loss(model, batch, mine))
            weight += float(batch["weights"].sum())
        model.train()
        return total / weight if weight else None

    # ---- the battle ----------------------------------------------------------------------------
    def fight(self, quest, data: QuestData, poll: Poll, on_eval: EvalHook, max_steps: int | None) -> str:
        """Train on one quest from its recorded epoch/offset; returns completed, skipped, stopped or
        preempted (the loop state stays on the quest; the next `begin` suspends it)."""
        cfg, s, rep = self.cfg, self.state, self.reporter
        n_train, rows_per_step = len(data.train), self.rows_per_micro * cfg.grad_accum * self.world
        t_start, ex_start = time.monotonic(), s.quest_epoch * n_train + s.quest_offset
        epochs = self.epochs(quest)
        first = True  # the battle's first step always reports: a switch shows at once
        while s.quest_epoch < epochs and n_train:
            order = data.epoch_order(cfg.seed, quest.id, s.quest_epoch)
            todo = (data.train[i] for i in order[s.quest_offset :])
            stream = pack(todo, self.row_tokens, s.quest_offset)
            for rows, epoch_end in _chunks(stream, rows_per_step):
                # The battle's last step skips the periodic blocks: the end-of-battle block below
                # runs eval and checkpoint once, with the quest marked done.
                last_step = epoch_end and s.quest_epoch == epochs - 1
                # ---- control: pause/resume/stop/skip take effect between steps
                action = self._sync(poll() if self.main else None)
                if action:
                    self._take_losses()
                if action in ("stop", "skip"):
                    return self._halt(quest, data, action)
                if action == "preempt":
                    log.info(
                        "quest %s preempted at epoch %d offset %d", quest.id, s.quest_epoch, s.quest_offset
                    )
                    return "preempted"
                t0 = time.monotonic()
                step_loss = self.train_step(rows, defer=self.defer_loss)
                s.step += 1
                span = [s.quest_epoch, s.quest_offset, rows[-1].end]
                s.quest_offset = rows[-1].end
                n_ex, n_tok = sum(r.examples for r in rows), sum(len(r.ids) for r in rows)
                s.examples_trained += n_ex
                s.tokens_trained += n_tok
                # On CUDA the loss stays on the device until a step that reports, evals, saves or
                # stops reads them all at once: one sync per logged step, not one per step.
                report = last_step or first or rep.due()
                self._pending_losses.append(step_loss)
                if (
                    not self.defer_loss
                    or report
                    or len(self._pending_losses) >= 20
                    or (
                        s.step % cfg.eval_every == 0
                        or s.step % cfg.save_steps == 0
                        or (max_steps is not None and s.step >= max_steps)
                    )
                ):
                    self._take_losses()
                self._speed.append((time.monotonic() - t0, n_tok, n_ex))
                # ---- periodic: step event + published state (throttled)
                done = s.quest_epoch * n_train + s.quest_offset
                # The battle's last step always reports, so its end is seen exactly (benches time it).
                if report or not self.defer_loss:
                    loss = s.recent_losses[-1]
                    payload = self._step_payload(quest, loss, done, n_train, t_start, ex_start)
                    rep.step({**payload, "span": span}, self.hero(), force=last_step or first)
                first = False
                # ---- periodic: guild eval hook
                if s.step % cfg.eval_every == 0 and not last_step:
                    self._eval(on_eval)
                # ---- periodic: checkpoint
                if s.step % cfg.save_steps == 0 and not last_step:
                    self.save(quest, data)
                if max_steps is not None and s.step >= max_steps and not last_step:
                    return self._halt(quest, data, "stop")
            s.quest_epoch, s.quest_offset = s.quest_epoch + 1, 0
        self._take_losses()
        # ---- last step of the battle: validation, eval, checkpoint, then the quest is done
        s.val_loss = self.val_loss(data.val) if self.main else None
        s.quest_done = True
        s.completed_quests += 1
        self._eval(on_eval)
        self.save(quest, data)
        crash_point("battle_end")
        return "completed"

    def _take_losses(self) -> None:
        """Move the pending step losses into the loop state (on CUDA: the one device read)."""
        if not self._pending_losses:
            return
        pending = self._pending_losses
        values = torch.stack(pending).tolist() if self.defer_loss else [float(x) for x in pending]
        pending.clear()
        s = self.state
        s.recent_losses = [*s.recent_losses, *values][-20:]
        s.train_loss = sum(s.recent_losses) / len(s.recent_losses)

    def _halt(self, quest, data: QuestData, action: str) -> str:
        if action == "stop":
            self.save(quest, data)
            return "stopped"
        self.state.quest_done = True  # a later checkpoint must not resume the abandoned quest
        return "skipped"

    def _eval(self, on_eval: EvalHook) -> None:
        if not self.main:
            return
        fn = make_generate_fn(
            self.acc.unwrap_model(self.model), self.tokenizer, max_new_tokens=self.cfg.max_new_tokens
        )
        try:
            on_eval(fn, self.state.step)
        except Exception as exc:  # a guild bug must not kill the battle; it is reported instead
            log.exception("eval hook failed at step %d", self.state.step)
            self.reporter.emit("trainer.error", message=f"eval hook failed: {exc}", step=self.state.step)

    def _sync(self, action: str | None) -> str | None:
        """Rank 0's command, seen by every rank (one small broadcast per step when world > 1)."""
        if self.world == 1:
            return action
        from accelerate.utils import broadcast_object_list

        while True:
            box = [action]
            broadcast_object_list(box, from_process=0)
            # "wait" is rank 0's keepalive during a pause: other ranks keep listening.
            if self.main or box[0] != "wait":
                return box[0]

    # ---- reporting -----------------------------------------------------------------------------
    def hero(self) -> dict[str, Any]:
        s = self.state
        return {
            "name": self.hero_cfg.name,
            "params": self.n_params,
            "trainable_params": self.n_trainable,
            "preset": self.preset,
            "profile": self.profile.kind,
            "profile_reason": self.profile.reason,
            **hero_stats(
                step=s.step,
                train_loss=s.train_loss,
                val_loss=s.val_loss,
                completed=s.completed_quests,
                vocab_size=self.vocab_size,
                target_loss=self.hero_cfg.target_loss,
            ),
        }

    def _step_payload(self, quest, loss, done, n_train, t_start, ex_start) -> dict[str, Any]:
        secs = sum(x[0] for x in self._speed) or 1e-9
        total = self.epochs(quest) * n_train
        rate = (done - ex_start) / max(time.monotonic() - t_start, 1e-9)
        hero = self.hero()
        return {
            "step": self.state.step,
            "loss": round(loss, 5),
            "lr": self.scheduler.get_last_lr()[0],
            "tokens_per_s": round(sum(x[1] for x in self._speed) / secs, 1),
            "tokens": self.state.tokens_trained,
            "examples_per_s": round(sum(x[2] for x in self._speed) / secs, 2),
            "quest_id": quest.id,
            "progress": round(done / total, 4) if total else 1.0,
            "eta_s": round((total - done) / rate, 1) if rate > 0 else None,
            "xp": hero["xp"],
            "level": hero["level"],
        }

    # ---- checkpoint ----------------------------------------------------------------------------
    def save(self, quest, data: QuestData | None = None) -> None:
        """Checkpoint on rank 0, then record the quest offset that matches it."""
        if not self.main:
            return
        s = self.state
        if data is not None and not s.quest_done:  # at the battle's end it was just computed
            s.val_loss = self.val_loss(data.val)
        loss = s.val_loss if s.val_loss is not None else s.train_loss
        model = self.acc.unwrap_model(self.model)
        cp = self.ckpts.save(
            model=model,
            tokenizer=self.tokenizer,
            loop_state=s.to_dict(),
            tensors_state={
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            },
            ledger={
                "train_loss": s.train_loss,
                "val_loss": s.val_loss,
                "learning_rate": self.scheduler.get_last_lr()[0],
                "epoch": s.quest_epoch + (s.quest_offset / max(1, len(data.train)) if data else 0.0),
                "perplexity": math.exp(min(loss, 50)) if loss is not None else None,
                "training_file": quest.name if quest else None,
                "quest_id": quest.id if quest else None,
                "skill_name": getattr(quest, "skill", None),
                "skill_level": getattr(quest, "level", None),
                "total_examples_trained": s.examples_trained,
            },
            hero=hero_mapping(
                model, preset=self.preset, profile=self.profile.kind, base_model=self.base_model
            ),
        )
        self.reporter.emit(
            "checkpoint.saved",
            step=s.step,
            name=cp.name,
            path=str(cp.path),
            train_loss=s.train_loss,
            val_loss=s.val_loss,
        )
        if quest is not None and not s.quest_done:
            self.record_progress(quest.id, s.quest_offset, s.quest_epoch)
        if self.on_checkpoint is not None:
            # Before retention, so it spares the champion the hook may have just crowned.
            self._checkpoint_hook(cp.step, cp.path)
        self.ckpts.prune()

    def _checkpoint_hook(self, step: int, path: Path) -> None:
        """The checkpoint hook, with generation over the weights just saved; like the eval hook, a
        failure is reported, never fatal (the checkpoint itself is already safe on disk)."""
        fn = make_generate_fn(
            self.acc.unwrap_model(self.model), self.tokenizer, max_new_tokens=self.cfg.max_new_tokens
        )
        try:
            self.on_checkpoint(fn, step, str(path))
        except Exception as exc:
            log.exception("checkpoint hook failed at step %d", step)
            self.reporter.emit("trainer.error", message=f"checkpoint hook failed: {exc}", step=step)


def _chunks(rows: Iterator[Row], n: int) -> Iterator[tuple[list[Row], bool]]:
    """Steps of n rows, each with a flag that says it is the epoch's last (one row of lookahead)."""
    buf: list[Row] = []
    for r in rows:
        if len(buf) == n:
            yield buf, False
            buf = []
        buf.append(r)
    if buf:
        yield buf, True
