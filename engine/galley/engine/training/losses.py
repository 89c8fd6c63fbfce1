"""Training losses of one sample, as pure functions of log-probabilities and value-head outputs.

Conventions shared by every function here:

- A *sample* is what one ``train_*`` call adds: one thread, or a pair of threads for
  ``train_dpo`` and ``train_ranking``. Each function returns that sample's loss as a 0-dim
  tensor, so gradients flow through it.
- Per-token tensors have shape ``(T,)`` and cover only the sample's *weighted tokens*:
  positions ``t >= 1`` of the rendered thread whose weight ``w_t`` is positive, in order.
  ``logprobs[i]`` is ``log pi(x_t | x_<t)`` of the i-th weighted token under the policy being
  trained. Position 0 is never weighted because nothing predicts it.
- Per-token losses are weighted means, ``sum_t w_t * l_t / sum_t w_t``, so a sample's loss
  does not grow with its length and a weight of 2 counts a token twice.

Normalization across samples: the trainer sums the losses of all samples added since the
previous ``optim_step``. Before clipping, it divides the summed gradients by the number of
samples, so the optimizer steps on the gradient of the *mean sample loss* of the step. A step
that mixes loss kinds (say language modelling and ranking) averages them with equal weight
per sample. A DPO or ranking pair counts as one sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Return ``sum_t w_t * v_t / sum_t w_t``. ``weights`` must have a positive sum."""
    return (values * weights).sum() / weights.sum()


def language_modelling_loss(logprobs: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean negative log-likelihood of the weighted tokens.

    ``loss = -sum_t w_t * log pi(x_t | x_<t) / sum_t w_t``
    """
    return weighted_mean(-logprobs, weights)


def mse_loss(value: Tensor, target: float) -> Tensor:
    """Squared error of the value head on the thread's last token.

    ``loss = (v_last - target)^2``, where ``v_last`` is the scalar head applied to the final
    hidden state of the last token of the rendered thread.
    """
    return (value - target) ** 2


def mse_per_token_loss(values: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean squared error of the value head on each weighted token.

    ``loss = sum_t w_t * (v_t - y_t)^2 / sum_t w_t``, where ``v_t`` is the scalar head applied
    to the final hidden state of token t.
    """
    return weighted_mean((values - targets) ** 2, weights)


def ranking_loss(score_positive: Tensor, score_negative: Tensor) -> Tensor:
    """Bradley-Terry pairwise loss on last-token value-head scores.

    ``loss = -log sigmoid(r_pos - r_neg)``, computed as ``softplus(r_neg - r_pos)`` for
    numerical stability.
    """
    return -F.logsigmoid(score_positive - score_negative)


def dpo_loss(
    policy_positive: Tensor,
    policy_negative: Tensor,
    reference_positive: float,
    reference_negative: float,
    beta: float,
) -> Tensor:
    """Direct Preference Optimization (DPO) loss of one preference pair.

    ``loss = -log sigmoid(beta * ((pi_pos - ref_pos) - (pi_neg - ref_neg)))``, where ``pi_*``
    is the policy's summed log-probability of the thread's weighted tokens and ``ref_*`` the
    same sum under the reference policy, given by the caller.
    """
    margin = (policy_positive - reference_positive) - (policy_negative - reference_negative)
    return -F.logsigmoid(beta * margin)


def ppo_token_losses(
    logprobs: Tensor, trajectory_logprobs: Tensor, advantages: Tensor, clip_range: float
) -> Tensor:
    """Per-token negated clipped surrogate objective of PPO.

    ``r_t = exp(logprob_t - trajectory_logprob_t)``
    ``l_t = -min(r_t * A_t, clip(r_t, 1 - eps, 1 + eps) * A_t)`` with ``eps = clip_range``.
    """
    ratio = torch.exp(logprobs - trajectory_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    return -torch.minimum(unclipped, clipped)


def ppo_loss(
    logprobs: Tensor, trajectory_logprobs: Tensor, advantages: Tensor, weights: Tensor, clip_range: float
) -> Tensor:
    """Weighted mean of :func:`ppo_token_losses` over the weighted tokens.

    ``trajectory_logprobs`` are the log-probabilities of the same tokens under the policy
    that generated them (constants here).
    """
    return weighted_mean(ppo_token_losses(logprobs, trajectory_logprobs, advantages, clip_range), weights)


def k3_kl(logprobs: Tensor, reference_logprobs: Tensor) -> Tensor:
    """Per-token "k3" estimator of KL(pi || pi_ref).

    ``k3_t = exp(ref_t - logprob_t) - (ref_t - logprob_t) - 1``, which is non-negative and
    unbiased for tokens sampled from pi.
    """
    log_ratio = reference_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


def grpo_loss(
    logprobs: Tensor,
    trajectory_logprobs: Tensor,
    reference_logprobs: Tensor,
    advantages: Tensor,
    weights: Tensor,
    clip_range: float,
    kl_beta: float,
) -> Tensor:
    """GRPO loss: PPO's clipped surrogate plus a k3 KL penalty per token.

    ``l_t = ppo_t + kl_beta * k3_t`` and ``loss = sum_t w_t * l_t / sum_t w_t``, with ``ppo_t``
    from :func:`ppo_token_losses` and ``k3_t`` from :func:`k3_kl` against the reference
    policy's log-probabilities. The group-normalized advantages are computed by the caller.
    """
    token_losses = ppo_token_losses(logprobs, trajectory_logprobs, advantages, clip_range)
    token_losses = token_losses + kl_beta * k3_kl(logprobs, reference_logprobs)
    return weighted_mean(token_losses, weights)
