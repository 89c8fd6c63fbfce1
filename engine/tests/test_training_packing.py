"""Packing: no attention across packed sequences, packed training equal to one-by-one
training, first-fit-decreasing micro-batches, eager micro-batches and dropped long samples."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch
from test_training_support import (
    chat,
    gradients,
    make_trainer,
    reference_token_logprobs,
    relative_error,
    render_tokens,
    rendered,
    weighted_positions,
)

from galley.engine.training.forward import ModelParts, _layout, forward_packed
from galley.engine.training.packing import PAD_ID, Sample, TokenSequence, pack_first_fit_decreasing, pack_rows

# ---------------------------------------------------------------------------------------
# Leakage


def _all_weighted(ids: list[int]) -> TokenSequence:
    return TokenSequence(ids=ids, weights=[1.0] * len(ids))


def test_single_row_restarts_positions():
    rows = pack_rows([_all_weighted([5, 6, 7]), _all_weighted([8]), _all_weighted([9, 10])])
    assert rows.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert rows.position_ids.tolist() == [[0, 1, 2, 0, 0, 1]]
    assert rows.offsets == [0, 3, 4]
    assert rows.lengths == [3, 1, 2]


def test_rows_pack_first_fit_decreasing():
    sequences = [
        _all_weighted([1, 2]),
        _all_weighted([3, 4, 5, 6]),
        _all_weighted([7]),
        _all_weighted([8, 9, 10]),
    ]
    rows = pack_rows(sequences, row_width=4)
    # Rows: the 4-token sequence; the 3-token one with the 1-token one; the 2-token one and padding.
    assert rows.input_ids.tolist() == [[3, 4, 5, 6], [7, 8, 9, 10], [1, 2, PAD_ID, PAD_ID]]
    assert rows.position_ids.tolist() == [[0, 1, 2, 3], [0, 0, 1, 2], [0, 1, 0, 1]]
    assert rows.offsets == [8, 0, 4, 5]
    flat = rows.input_ids.reshape(-1).tolist()
    for sequence, offset in zip(sequences, rows.offsets, strict=True):
        assert flat[offset : offset + len(sequence)] == sequence.ids


def test_rows_reject_too_long_sequence():
    with pytest.raises(ValueError, match="a sequence of 3 tokens does not fit in rows of 2 tokens"):
        pack_rows([_all_weighted([1, 2, 3])], row_width=2)


def test_layout_falls_back_to_single_row(tiny_llama_dir: Path):
    parts = ModelParts.from_module(make_trainer(tiny_llama_dir).model.module)
    sequences = [_all_weighted(list(range(1, 7))), _all_weighted([1, 2, 3, 4]), _all_weighted([5, 6, 7, 8])]
    # Rows of 6 tokens: each sequence alone, 18 tokens with padding for 14 real ones.
    assert _layout(parts, sequences, max_tokens=None).input_ids.shape == (3, 6)
    assert _layout(parts, sequences, max_tokens=18).input_ids.shape == (3, 6)
    assert _layout(parts, sequences, max_tokens=16).input_ids.shape == (1, 14)


@pytest.mark.parametrize("single_row", [False, True], ids=["rows", "single-row"])
def test_packed_sequences_no_leakage(tiny_model_dir: Path, single_row: bool):
    trainer = make_trainer(tiny_model_dir)
    parts = replace(ModelParts.from_module(trainer.model.module), single_row=single_row)
    # In rows as wide as the longest sequence, the second and third share a row.
    first = [100 + i for i in range(10)]
    second = [700, 800, 900, 1000]
    third = [1100, 1200, 1300, 1400, 1500]
    altered_second = [701, 802, 903, 1004]

    def run(sequences: list[list[int]]):
        tokens = [_all_weighted(ids) for ids in sequences]
        return forward_packed(parts, tokens, logprobs_for=[True] * 3, values_for=[False] * 3)

    with torch.no_grad():
        alone = [reference_token_logprobs(trainer.model.module, ids) for ids in (first, second, third)]
        packed = run([first, second, third])
        altered = run([first, altered_second, third])

    for index in range(3):
        got = packed[index].logprobs
        assert got is not None
        assert torch.allclose(got, alone[index], atol=1e-5), f"sequence {index} differs from its lone forward"
    # Changing every token of the second sequence leaves the others bit for bit unchanged.
    for index in (0, 2):
        unchanged, changed = packed[index].logprobs, altered[index].logprobs
        assert unchanged is not None and changed is not None
        assert torch.equal(unchanged, changed), f"sequence {index} saw sequence 1"


# ---------------------------------------------------------------------------------------
# Packed training equals one-by-one training

THREADS = [
    chat("What is the capital of Freedonia?", "Fredville."),
    chat("Name a prime number.", "Seven is prime, and so is eleven."),
    chat("Hi", "Hello! How can I help you today?"),
    chat("Translate 'cat' to French.", "Chat."),
]


def _train_mixed(trainer, one_by_one: bool) -> None:
    """Add LM, DPO and PPO samples; with ``one_by_one``, run each in its own micro-batch."""
    count = len(weighted_positions(rendered(trainer, THREADS[2]).weights))
    calls = [partial(trainer.train_language_modelling, thread) for thread in THREADS]
    calls.append(partial(trainer.train_dpo, THREADS[1], THREADS[3], -30.0, -12.0, 0.2))
    calls.append(partial(trainer.train_ppo, THREADS[2], [-9.0] * count, 0.5, 0.2))
    for call in calls:
        call()
        if one_by_one:
            trainer.flush()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_packing_matches_one_by_one(tiny_llama_dir: Path, lora: bool):
    packed = make_trainer(tiny_llama_dir, max_batch_size=4096, lora=lora)
    one_by_one = make_trainer(tiny_llama_dir, max_batch_size=4096, lora=lora)

    _train_mixed(packed, one_by_one=False)
    _train_mixed(one_by_one, one_by_one=True)
    packed_grads = gradients(packed)
    single_grads = gradients(one_by_one)

    assert packed._pending.micro_batches == 2  # one with dropout (LM), one without (DPO, PPO)
    assert one_by_one._pending.micro_batches == len(THREADS) + 2
    assert packed._pending.loss_sum == pytest.approx(one_by_one._pending.loss_sum, rel=1e-5)
    assert packed_grads.keys() == single_grads.keys()
    assert packed_grads
    for name, grad in packed_grads.items():
        assert relative_error(grad, single_grads[name]) < 1e-4, name

    packed_stats = packed.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)
    single_stats = one_by_one.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)
    assert packed_stats["samples"] == single_stats["samples"] == len(THREADS) + 2
    assert packed_stats["tokens"] == single_stats["tokens"]
    assert packed_stats["grad_norm"] == pytest.approx(single_stats["grad_norm"], rel=1e-4)


# ---------------------------------------------------------------------------------------
# Micro-batches


def _sample(tokens: int, index: int) -> Sample:
    return Sample(
        "train_language_modelling",
        [_all_weighted(list(range(tokens)))],
        loss=lambda outputs: torch.zeros(()),
        needs_logprobs=True,
        needs_values=False,
        index=index,
    )


def test_first_fit_decreasing_fills_micro_batches():
    sizes = [70, 10, 50, 30, 20, 60, 40, 20]
    samples = [_sample(size, index) for index, size in enumerate(sizes)]
    batches = pack_first_fit_decreasing(samples, max_tokens=100)

    assert len(batches) == 3  # 300 tokens in bins of 100: optimal here
    placed = sorted(s.index for batch in batches for s in batch)
    assert placed == list(range(len(sizes)))
    for batch in batches:
        assert sum(s.num_tokens for s in batch) <= 100
        assert [s.index for s in batch] == sorted(s.index for s in batch)


def test_first_fit_decreasing_rejects_oversized_sample():
    with pytest.raises(ValueError, match="sample of 101 tokens does not fit in a micro-batch of 100 tokens"):
        pack_first_fit_decreasing([_sample(101, 0)], max_tokens=100)


def test_micro_batches_run_before_optim_step(tiny_llama_dir: Path):
    lengths = [len(render_tokens(tiny_llama_dir, t)) for t in THREADS]
    trainer = make_trainer(tiny_llama_dir, max_batch_size=max(lengths) + 1)
    trainer.train_language_modelling(THREADS[0])
    assert trainer.queued_samples == 1  # less than a full micro-batch waits
    for thread in THREADS[1:]:
        trainer.train_language_modelling(thread)

    assert trainer._pending.micro_batches >= 1
    assert trainer.queued_samples < len(THREADS)
    stats = trainer.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)
    assert trainer.queued_samples == 0
    assert stats["samples"] == len(THREADS)


def test_long_sample_is_dropped_and_counted(tiny_llama_dir: Path, caplog: pytest.LogCaptureFixture):
    trainer = make_trainer(tiny_llama_dir, max_batch_size=40)
    long_thread = chat("Tell me a long story. " * 8, "Once upon a time " * 8)
    long_tokens = len(rendered(trainer, long_thread).ids)
    assert long_tokens > 40

    with caplog.at_level(logging.WARNING, logger="galley.engine.training"):
        result = trainer.train_language_modelling(long_thread)
        second = trainer.train_language_modelling(long_thread)
        kept = trainer.train_language_modelling(THREADS[0])

    assert result == {"tokens": long_tokens, "dropped": True}
    assert second["dropped"] is True
    assert kept["dropped"] is False
    drop_messages = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_messages) == 1
    assert f"{long_tokens} tokens" in drop_messages[0]
    assert "max_batch_size=40" in drop_messages[0]

    stats = trainer.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)
    assert stats["samples_dropped"] == 2
    assert stats["samples"] == 1
    assert trainer.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)["samples_dropped"] == 0


def test_pair_longer_than_micro_batch_is_dropped(tiny_llama_dir: Path):
    lengths = [len(render_tokens(tiny_llama_dir, t)) for t in THREADS[:2]]
    trainer = make_trainer(tiny_llama_dir, max_batch_size=max(lengths) + 1)
    result = trainer.train_dpo(THREADS[0], THREADS[1], -10.0, -10.0, 0.1)
    assert result == {"tokens": sum(lengths), "dropped": True}
    assert trainer.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)["samples_dropped"] == 1
