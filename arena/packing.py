"""Sequence packing: short examples laid end to end in rows of max_length tokens.

Packed examples do NOT attend to each other. Each row records its examples' lengths, and the trainer
runs the model under `arena.attention.packed`, which attends within each example only and pays
only for the example's own length. Each example's position ids also restart at 0 inside its row, so
a model that cannot use packed attention still gets it right: called with position ids, no
attention mask and no KV cache, transformers builds a block-diagonal causal mask from the
position-id resets (`find_packed_sequence_indices` in masking_utils), slower but equal. Either way
a packed row computes exactly what the examples would compute alone, minus the padding. Targets never cross an example boundary: the last token of
each example has weight 0.

Packing is next-fit and streaming: examples are taken in the epoch's order, and a row is closed when
the next example does not fit. Each row records how many examples of the order were consumed when it
closed, so a battle that resumes from offset k (always a row boundary, since checkpoints fall between
steps) packs exactly the same rows as the uninterrupted battle would have.

Getting a batch onto a GPU (`collate(..., pin_memory=True)`, `to_device`): the batch is built in pinned
host memory and copied with non_blocking=True, so the host queues the next kernels instead of waiting
for the copy (a blocking host-to-device copy synchronises the stream). This module owns the rows and
their tensors; it must not run the model or decide the device (the trainer does).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from arena.formatting import Example


@dataclass
class Row:
    ids: list[int]
    targets: list[int]
    weights: list[float]
    positions: list[int]
    end: int  # examples of the epoch order consumed once this row is complete
    examples: int
    lengths: list[int]  # token count of each example, in row order

    @property
    def weight(self) -> float:
        return sum(self.weights)


def pack(examples: Iterable[Example], max_length: int, start: int = 0) -> Iterator[Row]:
    """Rows from examples in order; `start` is the offset of the first example in the epoch order."""
    ids: list[int] = []
    targets: list[int] = []
    weights: list[float] = []
    positions: list[int] = []
    lengths: list[int] = []
    count, n = start, 0
    for ex in examples:
        if ids and len(ids) + len(ex) > max_length:
            yield Row(ids, targets, weights, positions, count, n, lengths)
            ids, targets, weights, positions, lengths, n = [], [], [], [], [], 0
        ids += ex.ids
        # Position j predicts token j+1 of the same example; the last position predicts nothing.
        targets += [*ex.ids[1:], 0]
        weights += [*ex.weights[1:], 0.0]
        positions += range(len(ex))
        lengths.append(len(ex))
        count += 1
        n += 1
    if ids:
        yield Row(ids, targets, weights, positions, count, n, lengths)


def collate(rows: list[Row], pad_id: int, pin_memory: bool = False) -> dict[str, torch.Tensor]:
    """Pad rows to the longest one (pad positions weigh 0 and continue the last position run).

    pin_memory=True (CUDA only) builds the tensors in page-locked memory, ready for `to_device`."""
    width = max(len(r.ids) for r in rows)
    shape = (len(rows), width)
    ids = torch.full(shape, pad_id, dtype=torch.long, pin_memory=pin_memory)
    targets = torch.zeros(shape, dtype=torch.long, pin_memory=pin_memory)
    weights = torch.zeros(shape, dtype=torch.float32, pin_memory=pin_memory)
    positions = torch.zeros(shape, dtype=torch.long, pin_memory=pin_memory)
    for i, r in enumerate(rows):
        n = len(r.ids)
        ids[i, :n] = torch.tensor(r.ids)
        targets[i, :n] = torch.tensor(r.targets)
        weights[i, :n] = torch.tensor(r.weights)
        # Padding continues the last run of positions, so it joins the last example's block
        # instead of opening a new one; its weight is 0 and it sits after every real token.
        last = r.positions[-1]
        positions[i, :n] = torch.tensor(r.positions)
        positions[i, n:] = torch.arange(last + 1, last + 1 + width - n)
    return {"input_ids": ids, "targets": targets, "weights": weights, "position_ids": positions}


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`. To a CUDA device: from pinned memory (pinned here when it is not
    yet) with a non-blocking copy, which never waits for the device. The pinned source may be
    dropped at once: PyTorch's pinned-memory cache keeps it until the copy has run. Anywhere else, or
    already there: `.to(device)`, a no-op for a tensor already on it."""
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    if not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def dummy_row(pad_id: int) -> Row:
    """A one-token row with no weight: keeps a rank busy at the end of an epoch (DDP needs every
    rank to run the same number of micro-steps)."""
    return Row([pad_id], [0], [0.0], [0], 0, 0, [1])
