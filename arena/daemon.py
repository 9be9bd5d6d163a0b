"""The arena daemon: intake + the trainer, forever (or until its limits).

    realm arena [--max-steps N] [--max-quests N] [--until-idle]

Start-up (rank 0): take the `arena` instance lock, remove crash leftovers from models/ and reconcile
the ledger with the folders, load the hero from the newest complete checkpoint (or build it), then
settle the quests table with that checkpoint: the checkpoint is trusted. A quest it was inside
continues from the epoch/offset it recorded; a quest it had finished is marked completed; a quest it
holds as suspended keeps that offset; any other quest left in processing goes back to the front of its
queue with offset 0 (nothing of it survived).

Preemption (`arena.preempt`: idle | priority | never, default idle): between steps, rank 0 also asks
the queue whether the quest it would claim next outranks the one in battle (arena.queue.outranks: a
player's quest over a guild idle quest; with priority, also a higher priority over a lower one). If so
the battle ends as "preempted" before its next step, the quest goes back to the front of its priority
by `QuestQueue.requeue` (recover()'s move) with the offset it reached, and the next claim takes the
preemptor. The trainer keeps the preempted quest's (epoch, offset) in its loop state, saved with the
weights in every checkpoint (arena.trainer says why not a checkpoint per switch), and resumes it there
when it is claimed again; after a crash, `_settle_quests` sets every quest's offset from the
checkpoint, as for the battle the checkpoint was inside.

Then the loop: claim the next quest and fight it (one battle), finish it, repeat. When the queue is
empty: run intake, call `on_idle()` (the guild writes an idle quest), and poll again. Battle commands
(pause, resume, stop, skip) arrive through arena.control between steps, while idle too. SIGTERM and
SIGINT act as `stop`: checkpoint, then exit 0 (under the guardian, exit 0 means "stay stopped" until
`realm resume` or `realm up`). Commands still pending from before this arena started are expired,
not obeyed (arena.control says why).

Hooks (all optional; default no-ops), given as `ArenaHooks(on_eval=..., on_idle=...)`:
    on_eval(generate_fn, step)  every training.eval_every steps and at the end of each battle;
        generate_fn(prompts: list[str]) -> list[str] is batched greedy decoding through the chat template
    on_checkpoint(generate_fn, step, path)  after each checkpoint has landed (rank 0), with the same
        generate_fn over the weights just saved: the guild records the checkpoint's evals and applies
        the champion rule (guild/champion.py)
    on_idle()                   whenever the queue is found empty
    intake()                    one intake pass, run at the top of each idle poll (and, when given, in a
        background thread every poll). Default: arena.intake's InboxWatcher runs continuously and
        `Intake.scan(wait=False)` is the idle pass.
`realm arena` takes them from `guild.hooks.arena_hooks(realm) -> ArenaHooks` when that module exists.

Under `accelerate launch --multi_gpu --num_processes N realm.py arena` (or torchrun) every rank runs
this loop (on a machine without GPUs, `--multi_gpu` is what makes accelerate start N ranks; they join
over gloo); rank 0 alone claims quests,
reads commands and writes, and broadcasts its decisions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arena import control
from arena.checkpoints import CheckpointManager, crash_point
from arena.queue import QuestQueue, outranks
from arena.reporting import Reporter, sinks_for
from sentinels.config import REPO_ROOT

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.arena")


def _noop(*_args: Any) -> None:
    return None


@dataclass
class ArenaHooks:
    on_eval: Callable[[Callable[[list[str]], list[str]], int], Any] = _noop
    on_checkpoint: Callable[[Callable[[list[str]], list[str]], int, str], Any] = _noop
    on_idle: Callable[[], Any] = _noop
    intake: Callable[[], Any] | None = None


def default_intake(realm: Realm):
    """The arena's own intake: recover half-claimed files, then watch the inbox continuously."""
    from arena.intake.service import Intake
    from arena.intake.watcher import InboxWatcher

    intake = Intake.for_realm(realm)
    intake.recover_claims()
    return intake, InboxWatcher(intake)


@dataclass
class ArenaDaemon:
    realm: Realm
    hooks: ArenaHooks = field(default_factory=ArenaHooks)
    max_steps: int | None = None
    max_quests: int | None = None
    until_idle: bool = False
    poll_s: float = 1.0
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.queue = QuestQueue(self.realm.home, self.realm.store, self.realm.events)
        self.paused = False
        self.preempt = self.realm.config.arena.preempt
        self._preemptor: int | None = None

    # ---- commands (rank 0) -----------------------------------------------------------------
    def poll(self) -> str | None:
        """Take pending commands; blocks while paused. Returns None, "stop" or "skip"."""
        result = None
        for cmd in control.take_pending(self.realm.store):
            action = cmd["action"]
            if action in ("pause", "resume"):
                self._set_paused(action == "pause")
            elif action in ("stop", "skip"):
                result = result or action
        if self.stop_event.is_set():
            return "stop"
        while self.paused and result is None and not self.stop_event.is_set():
            time.sleep(0.1)
            self._keepalive()
            for cmd in control.take_pending(self.realm.store):
                if cmd["action"] == "resume":
                    self._set_paused(False)
                elif cmd["action"] in ("stop", "skip"):
                    result = result or cmd["action"]
        return "stop" if self.stop_event.is_set() else result

    def _set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        kind, state = ("trainer.paused", "paused") if paused else ("trainer.resumed", "fighting")
        step = self.trainer.state.step if hasattr(self, "trainer") else None
        self.reporter.emit(kind, step=step, quest_id=self.reporter.battle.get("quest_id"))
        if not paused and self.reporter.battle.get("quest_id") is None:
            state = "idle"
        self.reporter.publish(force=True, state=state)

    def _keepalive(self) -> None:
        # Other ranks wait in a broadcast while rank 0 is paused; tell them every few seconds
        # so a long pause never hits the process group's timeout.
        now = time.monotonic()
        if self.world > 1 and now - getattr(self, "_last_ka", 0.0) > 5:
            self._last_ka = now
            self.trainer._sync("wait")

    # ---- the daemon ------------------------------------------------------------------------
    def run(self) -> int:
        started = time.time()  # commands sent from here on are this arena's
        from accelerate import Accelerator

        cfg = self.realm.config.training
        import torch

        gpu = torch.cuda.is_available()
        precision = {"auto": "no", "fp32": "no"}.get(cfg.precision, cfg.precision)
        if cfg.precision == "auto" and gpu and torch.cuda.is_bf16_supported():
            precision = (
                "bf16"  # CPU autocast to bf16 is slower than fp32 on most CPUs, so auto keeps fp32 there
            )
        # cpu=True without a GPU: under torchrun/`accelerate launch --multi_gpu` accelerate then picks
        # MULTI_CPU with the gloo backend instead of falling back to one process.
        acc = Accelerator(mixed_precision=precision, cpu=not gpu)
        self.world = acc.num_processes
        main = acc.is_main_process
        log.info(
            "arena process %d of %d on %s (precision %s)",
            acc.process_index,
            self.world,
            acc.device,
            precision,
        )
        lock = None
        if main:
            from sentinels.locks import InstanceLock

            self.realm.init()
            lock = InstanceLock(self.realm.home.run, "arena").acquire()
            stale = control.expire_pending(self.realm.store, self.realm.events, started)
            if stale:
                log.info("expired commands %s, sent while no arena ran", stale)
            CheckpointManager.for_config(
                self.realm.home.models, self.realm.store, self.realm.config
            ).reconcile()
        acc.wait_for_everyone()
        self.reporter = Reporter(
            self.realm.store,
            self.realm.events,
            interval_s=cfg.event_interval_s,
            enabled=main,
            sinks=sinks_for(self.realm) if main else (),
        )
        intake_thread = watcher = None
        try:
            from arena.trainer import Trainer

            self.trainer = Trainer(
                self.realm.config,
                self.realm.home,
                self.realm.store,
                self.reporter,
                acc,
                REPO_ROOT,
                record_progress=self.queue.set_progress,
                on_checkpoint=self.hooks.on_checkpoint,
            )
            self.reporter.hero(self.trainer.hero())
            if main:
                self._settle_quests()
                if self.hooks.intake is None:
                    # The watcher queues a dropped file within ~settle_s; the idle pass below is a
                    # cheap second look (intake claims files by rename, so the two never collide).
                    intake, watcher = default_intake(self.realm)
                    watcher.start()
                    self.hooks.intake = lambda: intake.scan(wait=False)
                else:
                    intake_thread = self._start_intake()
            self._loop(main)
        except Exception as exc:
            log.exception("the arena failed")
            self.reporter.emit("trainer.error", message=f"{type(exc).__name__}: {exc}")
            self.reporter.publish(force=True, state="stopped")
            raise
        finally:
            self.stop_event.set()
            if intake_thread is not None:
                intake_thread.join(timeout=30)
            if watcher is not None:
                watcher.stop()
            self.reporter.close()  # flushes the TensorBoard sink's event files
            if lock is not None:
                lock.release()
        return 0

    def _settle_quests(self) -> None:
        """Make the quests table agree with the checkpoint the hero was loaded from."""
        s = self.trainer.state
        live = {q.id: q for q in self.queue.list(["processing", "queued"], limit=10**9)}
        for key in [k for k in s.suspended if int(k) not in live]:
            del s.suspended[key]  # cancelled while suspended: nothing left to resume
        resumed = None
        for quest in live.values():
            if quest.id == s.quest_id and s.quest_done:
                if quest.status == "processing":
                    self.queue.finish(quest.id, "completed")
                    log.info("quest %s was finished by the last checkpoint; marked completed", quest.id)
            elif quest.id == s.quest_id:
                self.queue.set_progress(quest.id, s.quest_offset, s.quest_epoch)
                resumed = quest if quest.status == "processing" else None
            else:
                # Suspended by a preemption before the checkpoint: its offset; else nothing of it
                # is in these weights (a queued quest preempted after the checkpoint included).
                epoch, offset = s.suspended.get(str(quest.id), (0, 0))
                if (quest.progress_offset, quest.progress_epoch) != (offset, epoch):
                    self.queue.set_progress(quest.id, offset, epoch)
        if resumed is None:
            self.queue.recover()
        self._resume = resumed

    def _start_intake(self) -> threading.Thread | None:
        if self.hooks.intake is None:
            return None

        def loop() -> None:
            while not self.stop_event.wait(self.poll_s):
                try:
                    self.hooks.intake()
                except Exception:
                    log.exception("intake pass failed")

        t = threading.Thread(target=loop, name="intake", daemon=True)
        t.start()
        return t

    def _next_quest(self):
        quest, self._resume = getattr(self, "_resume", None), None
        return quest or self.queue.claim_next(self.preempt)

    def _battle_poll(self, quest) -> Callable[[], str | None]:
        """poll() for one battle: battle commands first, then "preempt" when the quest the queue
        would claim next outranks this one (one indexed read per step)."""

        def poll() -> str | None:
            action = self.poll()
            if action is None and self.preempt != "never":
                head = self.queue.peek_next(self.preempt)
                if head is not None and outranks(head, quest, self.preempt):
                    self._preemptor = head.id
                    return "preempt"
            return action

        return poll

    def _loop(self, main: bool) -> None:
        tr, rep, fought = self.trainer, self.reporter, 0
        rep.publish(force=True, state="idle", quest_id=None, quest_name=None, step=tr.state.step)
        while True:
            if self.max_steps is not None and tr.state.step >= self.max_steps:
                break
            action = tr._sync(self.poll() if main else None)
            if action == "stop":
                break
            quest_id = None
            if main:
                quest = self._next_quest()
                quest_id = quest.id if quest else None
            quest_id = tr._sync(quest_id)
            if quest_id is None:
                if self.until_idle:
                    break
                if main:
                    self._idle()
                continue
            quest = self.queue.get(quest_id)
            status = self._battle(quest)
            if status == "stopped":
                break
            if status == "preempted":
                continue  # not a battle fought: the quest is back in the queue
            fought += 1
            crash_point("between_quests")
            if self.max_quests is not None and fought >= self.max_quests:
                break
        latest = tr.ckpts.latest()
        if main and tr.state.step > (latest.step if latest else 0):
            tr.save(None)  # steps since the last checkpoint (e.g. a skipped battle) are kept
        rep.publish(force=True, state="stopped", step=tr.state.step)
        rep.emit("trainer.stopped", step=tr.state.step, quest_id=rep.battle.get("quest_id"))

    def _idle(self) -> None:
        rep = self.reporter
        rep.publish(state="idle", quest_id=None, quest_name=None)
        for fn in (self.hooks.intake, self.hooks.on_idle):
            if fn is None:
                continue
            try:
                fn()
            except Exception as exc:
                log.exception("idle hook failed")
                rep.emit("trainer.error", message=f"idle hook failed: {exc}")
        if not self.queue.queued():
            self.stop_event.wait(self.poll_s)

    def _battle(self, quest) -> str:
        tr, rep, s = self.trainer, self.reporter, self.trainer.state
        tr.begin(quest)
        data = tr.load(quest)
        rep.emit(
            "battle.start",
            quest_id=quest.id,
            name=quest.name,
            examples=len(data.train) + len(data.val),
            train_examples=len(data.train),
            val_examples=len(data.val),
            epochs=tr.epochs(quest),
            step=s.step,
            resumed_at={"epoch": s.quest_epoch, "offset": s.quest_offset},
            formatted=data.stats.to_dict(),
        )
        rep.publish(
            force=True,
            state="paused" if self.paused else "fighting",
            quest_id=quest.id,
            quest_name=quest.name,
            step=s.step,
            progress=0.0,
            val_loss=s.val_loss,
        )
        status = tr.fight(quest, data, self._battle_poll(quest), self.hooks.on_eval, self.max_steps)
        if status == "stopped":
            rep.publish(force=True, state="stopped")
            return status
        if status == "preempted":
            by, self._preemptor = self._preemptor, None
            if tr.main:
                self.queue.requeue(quest.id, s.quest_offset, s.quest_epoch, by=by)
            rep.emit(
                "battle.preempted",
                quest_id=quest.id,
                by=by,
                step=s.step,
                epoch=s.quest_epoch,
                offset=s.quest_offset,
            )
            rep.publish(force=True, state="idle", quest_id=None, quest_name=None)
            return status
        if tr.main:
            self.queue.finish(quest.id, status, reason="skipped by command" if status == "skipped" else None)
        rep.emit(
            "battle.end",
            quest_id=quest.id,
            status=status,
            step=s.step,
            train_loss=s.train_loss,
            val_loss=s.val_loss,
        )
        rep.publish(force=True, state="idle", quest_id=None, quest_name=None, val_loss=s.val_loss)
        rep.hero(tr.hero())
        return status
