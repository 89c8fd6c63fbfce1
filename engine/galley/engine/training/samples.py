"""Building one training sample per ``train_*`` call: its sequences and its loss closure.

Each builder checks the op's arguments against the rendered threads (a per-token list must
have one entry per weighted token) and raises InvalidRequest naming the argument, the
lengths and the fix. The loss closures call the pure functions of ``losses.py``.

DPO, PPO and GRPO samples run without dropout (``Sample.dropout=False``): their losses
compare the policy's log-probabilities with reference or trajectory log-probabilities that
inference computed without dropout, so dropout noise would bias the ratios. TRL's DPO and
GRPO trainers disable dropout by default for the same reason. The other losses run with
the model's dropout (for LoRA, the adapter's ``lora_dropout``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from galley.engine.errors import InvalidRequest
from galley.engine.training import losses
from galley.engine.training.forward import SequenceOutputs
from galley.engine.training.packing import Sample, TokenSequence


def require_weighted_tokens(sequence: TokenSequence, op: str, argument: str = "thread") -> Tensor:
    """Return the weights of the weighted tokens, raising if the thread has none."""
    weights = sequence.weighted_token_weights()
    if weights.numel() == 0:
        raise InvalidRequest(
            f"{op}: {argument} has no weighted tokens, so there is nothing to train on; "
            f"end it with an assistant turn, or give its turns weights above 0"
        )
    return weights


def require_finite(values: Sequence[float] | float, op: str, argument: str) -> None:
    items = [values] if isinstance(values, int | float) else list(values)
    for index, value in enumerate(items):
        if not math.isfinite(value):
            where = argument if isinstance(values, int | float) else f"{argument}[{index}]"
            raise InvalidRequest(f"{op}: {where} is {value}; pass finite numbers")


def per_token_tensor(values: Sequence[float], sequence: TokenSequence, op: str, argument: str) -> Tensor:
    """Check that ``values`` has one entry per weighted token of ``sequence``."""
    expected = len(sequence.weighted_positions())
    if len(values) != expected:
        raise InvalidRequest(
            f"{op}: {argument} has {len(values)} values but the thread has {expected} weighted tokens; "
            f"give one value per weighted token, in the order logprobs_per_token returns them for this thread"
        )
    require_finite(values, op, argument)
    return torch.tensor(values, dtype=torch.float32)


def advantages_tensor(advantages: float | Sequence[float], sequence: TokenSequence, op: str) -> Tensor:
    """Broadcast one advantage to every weighted token, or check a per-token list."""
    if isinstance(advantages, int | float):
        require_finite(advantages, op, "advantages")
        count = len(sequence.weighted_positions())
        return torch.full((count,), float(advantages), dtype=torch.float32)
    return per_token_tensor(advantages, sequence, op, "advantages")


def _on(tensor: Tensor, like: Tensor) -> Tensor:
    return tensor.to(like.device)


def _logprobs(output: SequenceOutputs) -> Tensor:
    assert output.logprobs is not None
    return output.logprobs


def _values(output: SequenceOutputs) -> Tensor:
    assert output.values is not None
    return output.values


# ---------------------------------------------------------------------------------------
# One builder per op


def language_modelling(sequence: TokenSequence) -> Sample:
    op = "train_language_modelling"
    weights = require_weighted_tokens(sequence, op)

    def loss(outputs: list[SequenceOutputs]) -> Tensor:
        logprobs = _logprobs(outputs[0])
        return losses.language_modelling_loss(logprobs, _on(weights, logprobs))

    return Sample(op, [sequence], loss, needs_logprobs=True, needs_values=False)


def mse(sequence: TokenSequence, target: float) -> Sample:
    op = "train_mse"
    require_finite(target, op, "target")

    def loss(outputs: list[SequenceOutputs]) -> Tensor:
        return losses.mse_loss(_values(outputs[0])[-1], float(target))

    return Sample(op, [sequence], loss, needs_logprobs=False, needs_values=True)


def mse_per_token(sequence: TokenSequence, targets: Sequence[float]) -> Sample:
    op = "train_mse_per_token"
    weights = require_weighted_tokens(sequence, op)
    target_tensor = per_token_tensor(targets, sequence, op, "targets")
    positions = torch.tensor(sequence.weighted_positions(), dtype=torch.long)

    def loss(outputs: list[SequenceOutputs]) -> Tensor:
        values = _values(outputs[0])
        selected = values[_on(positions, values)]
        return losses.mse_per_token_loss(selected, _on(target_tensor, values), _on(weights, values))

    return Sample(op, [sequence], loss, needs_logprobs=False, needs_values=True)


def ranking(positive: TokenSequence, negative: TokenSequence) -> Sample:
    def loss(outputs: list[SequenceOutputs]) -> Tensor:
        return losses.ranking_loss(_values(outputs[0])[-1], _values(outputs[1])[-1])

    return Sample("train_ranking", [positive, negative], loss, needs_logprobs=False, needs_values=True)


def dpo(
    positive: TokenSequence,
    negative: TokenSequence,
    reference_positive: float,
    reference_negative: float,
    beta: float,
) -> Sample:
    op = "train_dpo"
    require_weighted_tokens(positive, op, "pos")
    require_weighted_tokens(negative, op, "neg")
    require_finite(reference_positive, op, "ref_logprobs_pos")
    require_finite(reference_negative, op, "ref_logprobs_neg")
    if not (math.isfinite(beta) and beta > 0):
        raise InvalidRequest(f"{op}: beta is {beta}; pass a positive number (0.1 is a common choice)")

    def loss(outputs: list[SequenceOutputs]) -> Tensor:
        policy_positive = _logprobs(outputs[0]).sum()
        policy_negative = _logprobs(outputs[1]).sum()
        return losses.dpo_loss(policy_positive, policy_negative, reference_positive, reference_negative, beta)

    return Sample(op, [positive, negative], loss, needs_logprobs=True, needs_values=False, dropout=False)


def _check_clip_range(op: str, clip_range: float) -> None:
    if not (math.isfinite(clip_range) and clip_range > 0):
        raise InvalidRequest(
            f"{op}: clip_range is {clip_range}; pass a positive number (0.2 is a common choice)"
        )


def ppo(
    sequence: TokenSequence,
    trajectory_logprobs: Sequence[float],
    advantages: float | Sequence[float],
    clip_range: float,
) -> Sample:
    op = "train_ppo"
    _check_clip_range(op, clip_range)
    weights = require_weighted_tokens(sequence, op)
    old = per_token_tensor(trajectory_logprobs, sequence, op, "trajectory_logprobs")
    advantage = advantages_tensor(advantages, sequence, op)

    def loss(outputs: list[SequenceOutputs]) -> Tensor:
        logprobs = _logprobs(outputs[0])
        return losses.ppo_loss(
            logprobs, _on(old, logprobs), _on(advantage, logprobs), _on(weights, logprobs), clip_range
        )

    return Sample(op, [sequence], loss, needs_logprobs=True, needs_values=False, dropout=False)


def grpo(
    sequence: TokenSequence,
    trajectory_logprobs: Sequence[float],
    reference_logprobs: Sequence[float],
    advantages: float | Sequence[float],
    clip_range: float,
    kl_beta: float,
) -> Sample:
    op = "train_grpo"
    _check_clip_range(op, clip_range)
    if not (math.isfinite(kl_beta) and kl_beta >= 0):
        raise InvalidRequest(f"{op}: kl_beta is {kl_beta}; pass 0 (no KL penalty) or a positive number")
    weights = require_weighted_tokens(sequence, op)
    old = per_token_tensor(trajectory_logprobs, sequence, op, "trajectory_logprobs")
    reference = per_token_tensor(reference_logprobs, sequence, op, "reference_logprobs")
    advantage = advantages_tensor(advantages, sequence, op)

    def loss(outputs: list[SequenceOutputs]) -> Tensor:
        logprobs = _logprobs(outputs[0])
        return losses.grpo_loss(
            logprobs,
            _on(old, logprobs),
            _on(reference, logprobs),
            _on(advantage, logprobs),
            _on(weights, logprobs),
            clip_range,
            kl_beta,
        )

    return Sample(op, [sequence], loss, needs_logprobs=True, needs_values=False, dropout=False)
