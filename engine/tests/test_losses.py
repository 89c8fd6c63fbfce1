"""Losses: hand-computed values of the pure functions, and each train_* op's loss and
gradients against a reference computed here from a plain (unpacked) forward of the model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_training_support import (
    chat,
    gradients,
    load_model,
    make_trainer,
    reference_token_logprobs,
    reference_values,
    reference_weighted_logprobs,
    relative_error,
    rendered,
    weighted_positions,
)

from galley.engine.training import Trainer, losses


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# ---------------------------------------------------------------------------------------
# Pure functions on hand-picked numbers


@pytest.mark.parametrize(
    ("logprob", "old", "advantage", "expected"),
    [
        (0.0, 0.0, 1.0, -1.0),  # ratio 1: plain -A
        (math.log(1.5), 0.0, 1.0, -1.2),  # ratio 1.5 > 1.2 with A > 0: clipped to 1.2
        (math.log(1.5), 0.0, -1.0, 1.5),  # ratio 1.5 with A < 0: the unclipped term is smaller
        (math.log(0.5), 0.0, -1.0, 0.8),  # ratio 0.5 < 0.8 with A < 0: clipped to 0.8
        (math.log(0.5), 0.0, 1.0, -0.5),  # ratio 0.5 with A > 0: unclipped
        (math.log(1.1), 0.0, 2.0, -2.2),  # inside the clip range
    ],
)
def test_ppo_token_loss_clipping(logprob, old, advantage, expected):
    value = losses.ppo_token_losses(
        torch.tensor([logprob]), torch.tensor([old]), torch.tensor([advantage]), clip_range=0.2
    )
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_k3_kl_values():
    new = torch.tensor([-1.0, -1.0, -2.0])
    ref = torch.tensor([-1.0, -0.5, -2.5])
    k3 = losses.k3_kl(new, ref)
    assert k3[0].item() == 0.0
    assert k3[1].item() == pytest.approx(math.exp(0.5) - 0.5 - 1, rel=1e-6)
    assert k3[2].item() == pytest.approx(math.exp(-0.5) + 0.5 - 1, rel=1e-6)


def test_dpo_and_ranking_values():
    dpo = losses.dpo_loss(torch.tensor(-1.0), torch.tensor(-3.0), -2.0, -2.0, beta=0.1)
    assert dpo.item() == pytest.approx(-log_sigmoid(0.1 * ((-1 + 2) - (-3 + 2))), rel=1e-6)
    ranking = losses.ranking_loss(torch.tensor(1.5), torch.tensor(0.5))
    assert ranking.item() == pytest.approx(-log_sigmoid(1.0), rel=1e-6)


def test_weighted_mean_weights_tokens():
    values = torch.tensor([1.0, 3.0])
    assert losses.weighted_mean(values, torch.tensor([1.0, 1.0])).item() == 2.0
    assert losses.weighted_mean(values, torch.tensor([1.0, 3.0])).item() == 2.5


# ---------------------------------------------------------------------------------------
# train_* ops against references from plain forwards


def step_loss(trainer: Trainer) -> float:
    """Run the queued samples and return the step's mean loss, without changing weights."""
    stats = trainer.optim_step(lr=0.0, wd=0.0, max_grad_norm=None)
    assert stats["skipped"] is False
    return stats["loss"]


MULTI_TURN = {
    "kind": "string",
    "turns": [
        ["user", "Name a colour."],
        ["assistant", "Blue."],
        ["user", "Another one?"],
        ["assistant", "Green, like grass."],
    ],
    "weights": [0.0, 0.5, 0.0, 2.0],
}


def test_language_modelling_matches_reference(tiny_model_dir: Path):
    trainer = make_trainer(tiny_model_dir)
    thread = rendered(trainer, MULTI_TURN)
    positions = weighted_positions(thread.weights)
    assert {thread.weights[t] for t in positions} == {0.5, 2.0}

    with torch.no_grad():
        logprobs = reference_weighted_logprobs(trainer.model.module, thread.ids, thread.weights)
    weights = torch.tensor([thread.weights[t] for t in positions])
    expected = float(-(weights * logprobs).sum() / weights.sum())

    trainer.train_language_modelling(MULTI_TURN)
    assert step_loss(trainer) == pytest.approx(expected, rel=1e-5)


def test_mse_losses_match_reference(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir, scoring=True)
    thread_wire = chat("Can you help me?", "Of course.")
    thread = rendered(trainer, thread_wire)
    positions = weighted_positions(thread.weights)
    targets = [0.1 * i - 0.3 for i in range(len(positions))]

    with torch.no_grad():
        values = reference_values(trainer, thread.ids)
    expected_last = float((values[-1] - 0.75) ** 2)
    squared = [(float(values[t]) - y) ** 2 for t, y in zip(positions, targets, strict=True)]
    expected_per_token = sum(squared) / len(squared)

    trainer.train_mse(thread_wire, 0.75)
    assert step_loss(trainer) == pytest.approx(expected_last, rel=1e-5)
    trainer.train_mse_per_token(thread_wire, targets)
    assert step_loss(trainer) == pytest.approx(expected_per_token, rel=1e-5)


def test_ranking_matches_reference(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir, scoring=True)
    positive = chat("Where is the station?", "Two streets north, thank you for asking.")
    negative = chat("Where is the station?", "Figure it out.")
    with torch.no_grad():
        r_pos = float(reference_values(trainer, rendered(trainer, positive).ids)[-1])
        r_neg = float(reference_values(trainer, rendered(trainer, negative).ids)[-1])

    trainer.train_ranking(positive, negative)
    assert step_loss(trainer) == pytest.approx(-log_sigmoid(r_pos - r_neg), rel=1e-5)


def test_dpo_matches_reference(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    positive = chat("Say hi.", "Hello there, friend!")
    negative = chat("Say hi.", "No.")
    module = trainer.model.module
    with torch.no_grad():
        pi_pos = float(reference_weighted_logprobs(module, *_ids_weights(trainer, positive)).sum())
        pi_neg = float(reference_weighted_logprobs(module, *_ids_weights(trainer, negative)).sum())
    ref_pos, ref_neg, beta = pi_pos + 0.7, pi_neg - 0.4, 0.5
    expected = -log_sigmoid(beta * ((pi_pos - ref_pos) - (pi_neg - ref_neg)))

    trainer.train_dpo(positive, negative, ref_pos, ref_neg, beta)
    assert step_loss(trainer) == pytest.approx(expected, rel=1e-5)


def _ids_weights(trainer: Trainer, thread: dict) -> tuple[list[int], list[float]]:
    result = rendered(trainer, thread)
    return result.ids, result.weights


def _ppo_reference(new: list[float], old: list[float], advantages: list[float], clip: float) -> list[float]:
    token_losses = []
    for n, o, a in zip(new, old, advantages, strict=True):
        ratio = math.exp(n - o)
        clipped_ratio = min(max(ratio, 1 - clip), 1 + clip)
        token_losses.append(-min(ratio * a, clipped_ratio * a))
    return token_losses


def _offsets(count: int, pattern: list[float]) -> list[float]:
    return [pattern[i % len(pattern)] for i in range(count)]


def test_ppo_matches_reference_with_clipping(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    thread = chat("Count to three.", "One, two, three.")
    with torch.no_grad():
        new = reference_weighted_logprobs(trainer.model.module, *_ids_weights(trainer, thread)).tolist()
    # Ratios exp(new - old) of e^0.5, e^-0.5, 1 and e^0.1: above, below and inside the clip range.
    old = [n - d for n, d in zip(new, _offsets(len(new), [0.5, -0.5, 0.0, 0.1]), strict=True)]
    advantages = _offsets(len(new), [1.0, -1.0, -2.0, 0.5, 1.5])
    clip = 0.2
    token_losses = _ppo_reference(new, old, advantages, clip)
    expected = sum(token_losses) / len(token_losses)

    trainer.train_ppo(thread, old, advantages, clip)
    assert step_loss(trainer) == pytest.approx(expected, rel=1e-5)


def test_ppo_broadcasts_scalar_advantage(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    thread = chat("Count to three.", "One, two, three.")
    with torch.no_grad():
        new = reference_weighted_logprobs(trainer.model.module, *_ids_weights(trainer, thread)).tolist()
    old = [n - 0.5 for n in new]
    token_losses = _ppo_reference(new, old, [2.0] * len(new), 0.2)

    trainer.train_ppo(thread, old, 2.0, 0.2)
    assert step_loss(trainer) == pytest.approx(sum(token_losses) / len(token_losses), rel=1e-5)


def test_grpo_matches_reference_with_kl(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    thread = chat("Count to three.", "One, two, three.")
    with torch.no_grad():
        new = reference_weighted_logprobs(trainer.model.module, *_ids_weights(trainer, thread)).tolist()
    old = [n - d for n, d in zip(new, _offsets(len(new), [0.3, -0.4, 0.0]), strict=True)]
    ref = [n + d for n, d in zip(new, _offsets(len(new), [0.2, -0.6, 0.05, 0.0]), strict=True)]
    advantages = _offsets(len(new), [1.0, -0.5])
    clip, kl_beta = 0.2, 0.3

    token_losses = _ppo_reference(new, old, advantages, clip)
    for i, (n, r) in enumerate(zip(new, ref, strict=True)):
        token_losses[i] += kl_beta * (math.exp(r - n) - (r - n) - 1)
    expected = sum(token_losses) / len(token_losses)

    trainer.train_grpo(thread, old, ref, advantages, clip, kl_beta)
    assert step_loss(trainer) == pytest.approx(expected, rel=1e-5)


def test_dpo_and_grpo_gradients_match_reference(tiny_llama_dir: Path):
    """The trainer's accumulated gradients equal autograd through a plain forward of a copy."""
    trainer = make_trainer(tiny_llama_dir)
    copy = load_model(tiny_llama_dir).module
    positive = chat("Say hi.", "Hello there, friend!")
    negative = chat("Say hi.", "No.")
    grpo_thread = chat("Count to three.", "One, two, three.")
    pos_ids, pos_weights = _ids_weights(trainer, positive)
    neg_ids, neg_weights = _ids_weights(trainer, negative)
    grpo_ids, grpo_weights = _ids_weights(trainer, grpo_thread)

    with torch.no_grad():
        grpo_new = reference_weighted_logprobs(copy, grpo_ids, grpo_weights)
    old = (grpo_new - 0.3).tolist()
    ref = (grpo_new + 0.2).tolist()

    # Reference: the mean of the two sample losses, by autograd through the copy.
    pi_pos = reference_weighted_logprobs(copy, pos_ids, pos_weights).sum()
    pi_neg = reference_weighted_logprobs(copy, neg_ids, neg_weights).sum()
    dpo = -torch.nn.functional.logsigmoid(0.5 * ((pi_pos - (-20.0)) - (pi_neg - (-10.0))))
    new = reference_weighted_logprobs(copy, grpo_ids, grpo_weights)
    ratio = torch.exp(new - torch.tensor(old))
    surrogate = -torch.minimum(ratio * 1.0, ratio.clamp(0.8, 1.2) * 1.0)
    log_ratio = torch.tensor(ref) - new
    grpo = (surrogate + 0.1 * (log_ratio.exp() - log_ratio - 1)).mean()
    (dpo + grpo).backward()

    trainer.train_dpo(positive, negative, -20.0, -10.0, 0.5)
    trainer.train_grpo(grpo_thread, old, ref, 1.0, 0.2, 0.1)
    grads = gradients(trainer)
    expected = dict(copy.named_parameters())
    assert grads.keys() == {name for name, p in expected.items() if p.grad is not None}
    for name, grad in grads.items():
        reference = expected[name].grad
        assert reference is not None
        assert relative_error(grad, reference) < 1e-4, name


def test_raw_logprobs_match_reference(tiny_qwen3_dir: Path):
    trainer = make_trainer(tiny_qwen3_dir)
    ids = [9707, 11, 1879, 0, 1234, 42]
    with torch.no_grad():
        expected = reference_token_logprobs(trainer.model.module, ids).tolist()
    assert trainer.scorer.raw_logprobs([ids])[0] == pytest.approx(expected, abs=1e-5)
