"""Per-token log-probabilities of several sequences, computed in padded batched forwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from galley.engine.batching.requests import is_token_id
from galley.engine.errors import InvalidRequest

# Defaults that bound one forward: padded tokens, and elements of the float32 logits
# tensor (2**28 elements are 1 GiB).
DEFAULT_MAX_BATCH_TOKENS = 8192
DEFAULT_MAX_LOGIT_ELEMENTS = 2**28


@dataclass
class PaddedBatch:
    indices: list[int]  # positions of these sequences in the caller's list
    input_ids: torch.Tensor  # (n, L), right-padded
    attention_mask: torch.Tensor  # (n, L), 1 on real tokens
    lengths: list[int]


def iter_padded_batches(
    sequences: list[list[int]],
    *,
    pad_token_id: int,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_rows: int | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[PaddedBatch]:
    """Group sequences by length into right-padded batches of at most ``max_batch_tokens`` padded tokens.

    A sequence longer than ``max_batch_tokens`` gets a batch of its own. Right padding
    leaves the real tokens at positions 0..n-1, so a causal model computes each sequence's
    logits as it would for the sequence alone.
    """
    order = sorted(range(len(sequences)), key=lambda index: len(sequences[index]))
    group: list[int] = []
    for index in order:
        rows = len(group) + 1
        width = len(sequences[index])  # sorted by length, so this sequence is the group's longest
        too_many_rows = max_rows is not None and rows > max_rows
        if group and (rows * width > max_batch_tokens or too_many_rows):
            yield _pad(sequences, group, pad_token_id, device)
            group = []
        group.append(index)
    if group:
        yield _pad(sequences, group, pad_token_id, device)


def _pad(sequences: list[list[int]], group: list[int], pad_token_id: int, device) -> PaddedBatch:
    lengths = [len(sequences[index]) for index in group]
    width = max(lengths)
    input_ids = torch.full((len(group), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(group), width), dtype=torch.long)
    for row, index in enumerate(group):
        input_ids[row, : lengths[row]] = torch.tensor(sequences[index], dtype=torch.long)
        attention_mask[row, : lengths[row]] = 1
    return PaddedBatch(group, input_ids.to(device), attention_mask.to(device), lengths)


def validate_sequences(sequences: list[list[int]], *, vocab_size: int) -> None:
    """Raise InvalidRequest naming the first empty sequence or out-of-vocabulary token id."""
    for position, sequence in enumerate(sequences):
        if len(sequence) == 0:
            raise InvalidRequest(f"sequence {position} is empty; logprobs need at least one token")
        bad = [token for token in sequence if not is_token_id(token, vocab_size)]
        if bad:
            raise InvalidRequest(
                f"sequence {position} contains token id {bad[0]!r} outside the vocabulary [0, {vocab_size}); "
                f"tokenize with this model's tokenizer"
            )


@torch.inference_mode()
def token_logprobs(
    model: torch.nn.Module,
    sequences: list[list[int]],
    *,
    pad_token_id: int,
    vocab_size: int,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_logit_elements: int = DEFAULT_MAX_LOGIT_ELEMENTS,
) -> list[list[float]]:
    """Return, for each sequence, log p(token_t | tokens before t) for t = 1..len-1.

    A sequence of n tokens gets n - 1 values, so a one-token sequence gets an empty list.
    Batches are bounded by ``max_batch_tokens`` padded tokens and by ``max_logit_elements``
    elements of the (rows, length, vocab) logits.
    """
    validate_sequences(sequences, vocab_size=vocab_size)
    device = next(model.parameters()).device
    token_budget = max(1, min(max_batch_tokens, max_logit_elements // vocab_size))
    results: list[list[float]] = [[] for _ in sequences]
    for batch in iter_padded_batches(
        sequences, pad_token_id=pad_token_id, max_batch_tokens=token_budget, device=device
    ):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        # Position t predicts token t + 1.
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (n, L-1, vocab)
        targets = batch.input_ids[:, 1:].unsqueeze(-1)
        picked = logprobs.gather(-1, targets).squeeze(-1).cpu()  # (n, L-1)
        for row, index in enumerate(batch.indices):
            results[index] = picked[row, : batch.lengths[row] - 1].tolist()
    return results
