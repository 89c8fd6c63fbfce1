"""Packing of rendered threads into micro-batches without cross-sequence attention.

A micro-batch contains samples of at most ``max_batch_size`` tokens in all. For the forward
pass its sequences are laid out in rows of concatenated token ids. The ``position_ids``
restart at 0 at the first token of every sequence, and the model is called with
``attention_mask=None`` and no KV cache. From these, transformers (5.x,
``masking_utils.find_packed_sequence_indices``) builds a block-diagonal causal mask per row
for the sdpa, eager and flex attention kernels. For flash attention it derives
variable-length sequence boundaries, but only for a batch of one row. Either way no token
attends to a token of another sequence, which ``test_training_packing.py`` checks against
each sequence run alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from galley.engine.training.forward import SequenceOutputs


@dataclass(frozen=True)
class TokenSequence:
    """One rendered thread: token ids and one training weight per token."""

    ids: list[int]
    weights: list[float]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.weights):
            raise ValueError(f"{len(self.ids)} token ids but {len(self.weights)} weights")

    def __len__(self) -> int:
        return len(self.ids)

    def weighted_positions(self) -> list[int]:
        """Positions ``t >= 1`` with a positive weight: the tokens that losses and logprobs cover."""
        return [t for t in range(1, len(self.ids)) if self.weights[t] > 0]

    def weighted_token_weights(self) -> Tensor:
        """Weights of :meth:`weighted_positions`, as a float32 tensor."""
        return torch.tensor([self.weights[t] for t in self.weighted_positions()], dtype=torch.float32)


# A sample's loss from the forward outputs of its sequences, in the order of ``sequences``.
LossFunction = Callable[[list["SequenceOutputs"]], Tensor]


@dataclass
class Sample:
    """One ``train_*`` call's training example: sequences that must share a micro-batch, and their loss."""

    kind: str  # the op name, e.g. "train_dpo"
    sequences: list[TokenSequence]
    loss: LossFunction
    needs_logprobs: bool
    needs_values: bool
    # Whether dropout layers (LoRA dropout, for one) are active in this sample's forward pass.
    dropout: bool = True
    # Order of arrival, so that packing is deterministic.
    index: int = 0

    @property
    def num_tokens(self) -> int:
        return sum(len(sequence) for sequence in self.sequences)

    @property
    def num_weighted_tokens(self) -> int:
        return sum(len(sequence.weighted_positions()) for sequence in self.sequences)


def pack_first_fit_decreasing(samples: Sequence[Sample], max_tokens: int) -> list[list[Sample]]:
    """Group samples into micro-batches of at most ``max_tokens`` tokens each.

    First-fit decreasing: the longest sample goes first into the first micro-batch with room.
    Every sample must itself fit, because the trainer drops longer ones before packing. Within a
    micro-batch, samples keep their order of arrival.
    """
    bins: list[list[Sample]] = []
    room: list[int] = []
    for sample in sorted(samples, key=lambda s: (-s.num_tokens, s.index)):
        size = sample.num_tokens
        if size > max_tokens:
            raise ValueError(f"sample of {size} tokens does not fit in a micro-batch of {max_tokens} tokens")
        for slot, free in enumerate(room):
            if size <= free:
                bins[slot].append(sample)
                room[slot] -= size
                break
        else:
            bins.append([sample])
            room.append(max_tokens - size)
    return [sorted(group, key=lambda s: s.index) for group in bins]


@dataclass(frozen=True)
class PackedRows:
    """Sequences of one forward pass laid out in rows, each sequence at ``offsets[i]`` of the flattened rows."""

    input_ids: Tensor  # (R, W) int64, padded with PAD_ID after the last sequence of a row
    position_ids: Tensor  # (R, W) int64, restarting at 0 for every sequence and for the padding
    offsets: list[int]  # into the flattened (R * W) tokens
    lengths: list[int]


# Any valid id works, because padding forms its own attention segment at the end of a row.
# No real token attends to it, and its outputs are never read.
PAD_ID = 0


def pack_rows(
    sequences: Sequence[TokenSequence], row_width: int | None = None, device: torch.device | str = "cpu"
) -> PackedRows:
    """Lay sequences out in rows of ``row_width`` tokens, first-fit decreasing, with restarting position ids.

    ``row_width=None`` concatenates every sequence into one row. Attention kernels with a
    mask compute every (query, key) pair of a row, so their cost grows with the square of
    the row width. Rows as wide as the longest sequence cost no more attention than padded
    batches, and they need less padding.
    """
    if not sequences:
        raise ValueError("cannot pack an empty list of sequences")
    for sequence in sequences:
        if len(sequence) == 0:
            raise ValueError("cannot pack a sequence with no tokens")
    lengths = [len(sequence) for sequence in sequences]
    width = row_width if row_width is not None else sum(lengths)
    if max(lengths) > width:
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit in rows of {width} tokens")

    rows: list[list[int]] = []  # sequence indices per row
    room: list[int] = []
    for index in sorted(range(len(sequences)), key=lambda i: (-lengths[i], i)):
        for row, free in enumerate(room):
            if lengths[index] <= free:
                rows[row].append(index)
                room[row] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(width - lengths[index])

    ids: list[int] = []
    positions: list[int] = []
    offsets = [0] * len(sequences)
    for row in rows:
        for index in sorted(row):
            offsets[index] = len(ids)
            ids.extend(sequences[index].ids)
            positions.extend(range(lengths[index]))
        padding = width - (len(ids) % width or width)
        ids.extend([PAD_ID] * padding)
        positions.extend(range(padding))
    return PackedRows(
        input_ids=torch.tensor(ids, dtype=torch.long, device=device).view(len(rows), width),
        position_ids=torch.tensor(positions, dtype=torch.long, device=device).view(len(rows), width),
        offsets=offsets,
        lengths=lengths,
    )


def group_sequences_by_tokens(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Split sequence indices, in order, into runs of at most ``max_tokens`` tokens.

    Used for inference ops, where nothing is dropped: a sequence longer than ``max_tokens``
    runs alone.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    current_tokens = 0
    for index, length in enumerate(lengths):
        if current and current_tokens + length > max_tokens:
            groups.append(current)
            current, current_tokens = [], 0
        current.append(index)
        current_tokens += length
    if current:
        groups.append(current)
    return groups
