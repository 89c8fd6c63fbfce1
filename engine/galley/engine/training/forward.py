"""Forward pass of packed sequences: per-token log-probabilities and value-head outputs.

The decoder runs once per packed batch of rows (see ``packing.py``). The language-model head then runs only on the
hidden states that predict a weighted token, so prompt tokens cost no ``(tokens, vocab)``
logits. The value head, a ``Linear(hidden, 1)``, runs on every position of the sequences
that need it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from galley.engine.errors import ModelError
from galley.engine.training.packing import PackedRows, TokenSequence, pack_rows

# Attention kernels for which transformers turns restarting position_ids into
# per-sequence attention. With any other kernel, packed sequences would attend to each other.
PACKING_ATTENTION_IMPLEMENTATIONS = frozenset(
    {"sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3", "flash_attention_4"}
)


@dataclass(frozen=True)
class SequenceOutputs:
    """Forward results of one sequence of a packed row."""

    # (W,) float32: log pi(x_t | x_<t) for each weighted position t, in order. None if not requested.
    logprobs: Tensor | None
    # (T,) float32: value head output at every position. None if not requested.
    values: Tensor | None


@dataclass(frozen=True)
class ModelParts:
    """The pieces of a causal LM that the packed forward calls directly."""

    module: nn.Module  # the spawn's model: a transformers causal LM, possibly wrapped by peft
    backbone: nn.Module  # decoder stack returning last_hidden_state, after the final norm
    lm_head: nn.Module
    scalar_head: nn.Linear | None
    # True for flash attention, which separates packed sequences only within a single row
    # (transformers derives its variable-length boundaries from position_ids of batch size 1).
    single_row: bool = False

    @classmethod
    def from_module(cls, module: nn.Module, scalar_head: nn.Linear | None = None) -> ModelParts:
        """Find the decoder and LM head of a transformers causal LM, through a peft wrapper if any.

        Calling the decoder of a peft model directly still runs the adapter, because peft
        replaces the adapted layers in place.
        """
        wrapper: Any = module
        causal_lm = wrapper.get_base_model() if is_peft_model(module) else module
        get_decoder = getattr(causal_lm, "get_decoder", None)
        get_output_embeddings = getattr(causal_lm, "get_output_embeddings", None)
        if get_decoder is None or get_output_embeddings is None:
            raise TypeError(
                f"{type(causal_lm).__name__} is not a transformers causal LM: "
                f"it has no get_decoder() or get_output_embeddings()"
            )
        lm_head = get_output_embeddings()
        if lm_head is None:
            raise TypeError(f"{type(causal_lm).__name__} has no output embeddings (language-model head)")

        attention = getattr(causal_lm.config, "_attn_implementation", None)
        if attention not in PACKING_ATTENTION_IMPLEMENTATIONS:
            raise ModelError(
                f"attention implementation {attention!r} cannot keep packed sequences apart; "
                f"load the model with attn_implementation='sdpa' (or eager, flex_attention, flash_attention_2)"
            )
        return cls(
            module=module,
            backbone=get_decoder(),
            lm_head=lm_head,
            scalar_head=scalar_head,
            single_row=str(attention).startswith("flash_attention"),
        )

    @property
    def device(self) -> torch.device:
        return next(self.lm_head.parameters()).device


def is_peft_model(module: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency, but plain models work without it
        return False
    return isinstance(module, PeftModel)


@contextmanager
def training_mode(module: nn.Module, training: bool) -> Iterator[None]:
    """Set ``module.train(training)`` inside the block, then restore its previous mode."""
    previous = module.training
    module.train(training)
    try:
        yield
    finally:
        module.train(previous)


def forward_packed(
    parts: ModelParts,
    sequences: Sequence[TokenSequence],
    *,
    logprobs_for: Sequence[bool],
    values_for: Sequence[bool],
    max_tokens: int | None = None,
) -> list[SequenceOutputs]:
    """Run the sequences as one packed batch and return each sequence's requested outputs.

    Rows are as wide as the longest sequence, unless their padding would take the batch
    past ``max_tokens`` tokens: then all sequences share one row. Runs under whatever grad
    mode and module mode the caller set.
    """
    rows = _layout(parts, sequences, max_tokens)
    hidden = parts.backbone(
        input_ids=rows.input_ids, position_ids=rows.position_ids, attention_mask=None, use_cache=False
    ).last_hidden_state  # (R, W, H)
    hidden = hidden.reshape(-1, hidden.shape[-1])  # (R * W, H)

    input_ids = rows.input_ids.reshape(-1)
    logprobs = _weighted_token_logprobs(parts, hidden, input_ids, sequences, rows.offsets, logprobs_for)
    values = _values(parts, hidden) if any(values_for) else None

    outputs = []
    for index, (offset, length) in enumerate(zip(rows.offsets, rows.lengths, strict=True)):
        sequence_values = (
            values[offset : offset + length] if values is not None and values_for[index] else None
        )
        outputs.append(SequenceOutputs(logprobs=logprobs[index], values=sequence_values))
    return outputs


def _layout(parts: ModelParts, sequences: Sequence[TokenSequence], max_tokens: int | None) -> PackedRows:
    if parts.single_row:
        # Flash attention keeps sequences apart only within one row, at no cost for its width.
        return pack_rows(sequences, None, device=parts.device)
    rows = pack_rows(sequences, max(len(sequence) for sequence in sequences), device=parts.device)
    if max_tokens is not None and rows.input_ids.numel() > max(max_tokens, sum(rows.lengths)):
        return pack_rows(sequences, None, device=parts.device)
    return rows


def _weighted_token_logprobs(
    parts: ModelParts,
    hidden: Tensor,
    input_ids: Tensor,
    sequences: Sequence[TokenSequence],
    offsets: Sequence[int],
    logprobs_for: Sequence[bool],
) -> list[Tensor | None]:
    """Compute log pi(x_t | x_<t) at the weighted positions of the requested sequences."""
    targets: list[int] = []
    counts: list[int] = []
    for sequence, offset, wanted in zip(sequences, offsets, logprobs_for, strict=True):
        positions = [offset + t for t in sequence.weighted_positions()] if wanted else []
        targets.extend(positions)
        counts.append(len(positions))
    if not targets:
        return [None] * len(sequences)

    target_index = torch.tensor(targets, dtype=torch.long, device=hidden.device)
    # The hidden state at t - 1 predicts the token at t.
    logits = parts.lm_head(hidden[target_index - 1]).float()  # (M, V)
    token_logprobs = -F.cross_entropy(logits, input_ids[target_index], reduction="none")  # (M,)

    results: list[Tensor | None] = []
    for piece, wanted in zip(torch.split(token_logprobs, counts), logprobs_for, strict=True):
        results.append(piece if wanted else None)
    return results


def _values(parts: ModelParts, hidden: Tensor) -> Tensor:
    head = parts.scalar_head
    if head is None:
        raise ValueError(
            "this model has no value head; spawn it with .into_scoring_model() to score or train values"
        )
    return head(hidden.to(head.weight.dtype)).squeeze(-1).float()  # (N,)
