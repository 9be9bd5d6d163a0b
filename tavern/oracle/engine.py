"""The engine: one thread that batches waiting requests into `generate` calls and streams their tokens.

A request becomes one `Job` per prompt. The batcher takes the oldest waiting job, waits up to
`oracle.batch_window_ms` for others with the same key (same loaded model, same sampling settings; a
request with a `seed` runs alone, so its seed means what it says), and runs up to `oracle.max_batch` of
them as one left-padded batch: every step then costs one forward over one new position per row, with
the KV cache. Batches run one at a time, which on a CPU is what the cores can do anyway. Adapter
checkpoints of one base share its model, so their key also names the adapter: a batch runs one
adapter, selected (under the base's lock) for the whole `generate` by `Loaded.selected`.

`BatchDriver` rides inside `generate` as its stopping criterion (transformers calls it once per step
with the new tokens, before it would stream them): it decodes each row's new token incrementally, cuts
at a stop string (holding back text that could still become one), ends a row at eos, at its own
max_tokens or when its job is cancelled (the client went away), and hands each delta to the job's
queue at once. When every row has ended, `generate` returns, so a cancelled batch stops at the next
step. `LogprobRecorder` keeps each step's log-probabilities for jobs that ask for logprobs.
"""

from __future__ import annotations

import copy
import itertools
import logging
import queue
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from arena.inference import ThinkBudget, left_pad
from tavern.oracle.protocol import OracleError

log = logging.getLogger("realm.oracle.engine")

_seq = itertools.count()


@dataclass(eq=False)
class Job:
    """One prompt to answer; its events go to `out` as (kind, index, ...) tuples:
    ("delta", i, text, logprob_entries | None) and ("done", i, finish_reason, prompt_tokens, completion_tokens)
    or ("error", i, OracleError)."""

    entry: Any  # manager.Loaded
    prompt_ids: list[int]
    max_tokens: int
    out: queue.Queue
    index: int = 0
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    ignore_eos: bool = False
    think_budget: int | None = None
    stops: list[str] = field(default_factory=list)
    top_logprobs: int | None = None  # None: no logprobs
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    generated: int = 0
    finish: str | None = None
    seq: int = field(default_factory=lambda: next(_seq))

    def key(self) -> tuple:
        sample = self.temperature is not None and self.temperature > 0
        return (
            id(self.entry.model),
            # Adapters of one base share its model: one batch runs one adapter (the base's active one).
            getattr(self.entry, "adapter", None),
            sample,
            self.temperature if sample else None,
            self.top_p if sample else None,
            self.ignore_eos,
            ("seed", self.seq) if self.seed is not None else None,
        )


class LogprobRecorder:
    """A logits processor that keeps the step's log-softmax (before sampling warpers), untouched."""

    def __init__(self):
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.last = torch.log_softmax(scores.float(), dim=-1)
        return scores


class _Row:
    __slots__ = ("job", "ids", "prefix", "read", "text", "sent", "pending", "done")

    def __init__(self, job: Job):
        self.job = job
        self.ids: list[int] = []
        self.prefix = self.read = 0  # incremental detokenization offsets into ids
        self.text = ""  # everything decoded so far (after a stop cut, up to it)
        self.sent = 0  # characters of text already sent
        self.pending: list[dict[str, Any]] | None = [] if job.top_logprobs is not None else None
        self.done = False


class BatchDriver(StoppingCriteria):
    def __init__(self, jobs: list[Job], tokenizer, recorder: LogprobRecorder | None):
        self.rows = [_Row(j) for j in jobs]
        self.tok = tokenizer
        self.recorder = recorder
        eos = tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        gen_eos = jobs[0].entry.model.generation_config.eos_token_id
        self.eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos]) - {None}
        self.hold = max((len(s) for j in jobs for s in j.stops), default=1) - 1

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, -1].tolist()
        for r, row in enumerate(self.rows):
            if not row.done:
                self._take(r, row, new[r])
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)

    def _take(self, r: int, row: _Row, token: int) -> None:
        job = row.job
        if job.cancel.is_set():
            self._end(row, "cancelled")
            return
        job.generated += 1
        if token in self.eos and not job.ignore_eos:
            self._end(row, "stop")
            return
        if row.pending is not None and self.recorder is not None and self.recorder.last is not None:
            row.pending.append(self._logprob(r, token, job.top_logprobs or 0))
        row.ids.append(token)
        # Incremental detokenization (as vLLM and TGI do): decode a short window and keep only what
        # grew, waiting while the end is an incomplete UTF-8 sequence.
        before = self.tok.decode(row.ids[row.prefix : row.read], skip_special_tokens=True)
        now = self.tok.decode(row.ids[row.prefix :], skip_special_tokens=True)
        if len(now) > len(before) and not now.endswith("\ufffd"):
            row.text += now[len(before) :]
            row.prefix, row.read = row.read, len(row.ids)
        for s in job.stops:
            at = row.text.find(s, max(0, row.sent - len(s)))
            if at >= 0:
                row.text = row.text[:at]
                self._end(row, "stop", cut=True)
                return
        if job.generated >= job.max_tokens:
            self._end(row, "length")
            return
        self._send(row, len(row.text) - (self.hold if job.stops else 0))

    def _logprob(self, r: int, token: int, top: int) -> dict[str, Any]:
        lp = self.recorder.last[r]
        entry: dict[str, Any] = {"token": self.tok.decode([token]), "logprob": float(lp[token]), "top": []}
        if top:
            vals, idx = torch.topk(lp, top)
            entry["top"] = [
                (self.tok.decode([i]), float(v)) for v, i in zip(vals.tolist(), idx.tolist(), strict=True)
            ]
        return entry

    def _send(self, row: _Row, upto: int) -> None:
        if upto > row.sent or (row.pending and upto >= row.sent and row.done):
            text = row.text[row.sent : max(upto, row.sent)]
            row.sent = max(upto, row.sent)
            entries, row.pending = row.pending, ([] if row.pending is not None else None)
            row.job.out.put(("delta", row.job.index, text, entries))

    def _end(self, row: _Row, finish: str, *, cut: bool = False) -> None:
        row.done = True
        if finish != "cancelled":
            if not cut and row.read < len(row.ids):  # an incomplete character at the end: send what it is
                tail = self.tok.decode(row.ids[row.prefix :], skip_special_tokens=True)
                before = self.tok.decode(row.ids[row.prefix : row.read], skip_special_tokens=True)
                row.text += tail[len(before) :]
            self._send(row, len(row.text))
        job = row.job
        job.finish = finish
        job.out.put(("done", job.index, finish, len(job.prompt_ids), job.generated))

    def finish_all(self) -> None:
        for row in self.rows:
            if not row.done:
                self._end(row, "cancelled" if row.job.cancel.is_set() else "length")


class Engine:
    """The batcher thread and its queue."""

    def __init__(self, max_batch: int, window_s: float):
        self.max_batch, self.window_s = max_batch, window_s
        self._pending: deque[Job] = deque()
        self._announced = 0  # requests on their way to submitting jobs (see `announce`)
        self._cv = threading.Condition()
        self._running: list[Job] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)
        self.counts = {"batches": 0, "jobs": 0, "cancelled": 0, "tokens": 0, "max_batch_seen": 0}
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="oracle-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cv:
            self._pending.append(job)
            self._cv.notify_all()

    @contextmanager
    def announce(self):
        """Held by a request from its arrival until its jobs are done: while a request is on its way
        (parsing, tokenizing, loading), the batcher waits up to the window for it; with none on the
        way it starts at once, so a lone request never pays the window."""
        with self._cv:
            self._announced += 1
        try:
            yield
        finally:
            with self._cv:
                self._announced -= 1
                self._cv.notify_all()

    def status(self) -> dict[str, Any]:
        with self._cv:
            return {
                "active": len(self._running),
                "queued": len(self._pending),
                **self.counts,
                "recent": list(self.recent),
            }

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()

    def _take_batch(self) -> list[Job] | None:
        with self._cv:
            while not self._pending and not self._stop:
                self._cv.wait()
            if self._stop:
                return None
            key = self._pending[0].key()
            deadline = time.monotonic() + self.window_s
            while True:
                same = [j for j in self._pending if j.key() == key]
                left = deadline - time.monotonic()
                on_the_way = self._announced - len(self._pending) - len(self._running)
                if len(same) >= self.max_batch or left <= 0 or on_the_way <= 0:
                    break
                self._cv.wait(left)
            batch = same[: self.max_batch]
            for j in batch:
                self._pending.remove(j)
            self._running = batch
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            except Exception as exc:  # one bad batch answers its requests with an error, not the server
                log.exception("generation failed")
                err = OracleError(500, f"generation failed: {exc}", type="server_error")
                for j in batch:
                    if j.finish is None:
                        j.finish = "error"
                        j.out.put(("error", j.index, err))
            finally:
                with self._cv:
                    self._running = []
                    self.counts["batches"] += 1
                    self.counts["jobs"] += len(batch)
                    self.counts["max_batch_seen"] = max(self.counts["max_batch_seen"], len(batch))
                    for j in batch:
                        self.counts["tokens"] += j.generated
                        self.counts["cancelled"] += j.finish == "cancelled"
                        self.recent.appendleft(
                            {
                                "model": j.entry.name,
                                "finish": j.finish,
                                "tokens": j.generated,
                                "batch": len(batch),
                            }
                        )

    def _run(self, batch: list[Job]) -> None:
        live = [j for j in batch if not j.cancel.is_set()]
        for j in batch:
            if j.cancel.is_set():
                j.finish = "cancelled"
                j.out.put(("done", j.index, "cancelled", len(j.prompt_ids), 0))
        if not live:
            return
        first = live[0]
        # An adapter checkpoint's batch holds its base (its adapter selected) for the whole generate.
        with first.entry.selected() as model:
            self._generate(live, model)

    def _generate(self, live: list[Job], model) -> None:
        first = live[0]
        tok = first.entry.tokenizer
        device = next(model.parameters()).device
        ids, mask = left_pad([j.prompt_ids for j in live], tok.pad_token_id)
        recorder = LogprobRecorder() if any(j.top_logprobs is not None for j in live) else None
        processors: list[Any] = [recorder] if recorder else []
        if any(j.think_budget is not None for j in live):
            processors.append(ThinkBudget(tok, [j.think_budget for j in live]))
        driver = BatchDriver(live, tok, recorder)
        config = copy.deepcopy(model.generation_config)
        config.max_new_tokens = max(j.max_tokens for j in live)
        config.max_length = None
        config.use_cache = True
        config.pad_token_id = tok.pad_token_id
        config.num_return_sequences = 1
        if first.ignore_eos:
            # None would be filled back in from the model's own generation config: name an id past the
            # vocabulary instead, which no step can produce.
            config.eos_token_id = model.config.vocab_size
        elif config.eos_token_id is None:
            config.eos_token_id = tok.eos_token_id
        sample = first.temperature is not None and first.temperature > 0
        config.do_sample = sample
        config.temperature = first.temperature if sample else None
        config.top_p = (first.top_p or 1.0) if sample else None
        config.top_k = None
        if first.seed is not None:
            torch.manual_seed(first.seed)
        with torch.inference_mode():
            model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                generation_config=config,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([driver]),
            )
        driver.finish_all()
