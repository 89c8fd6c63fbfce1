"""Parts of the batching scheduler that need no model: the batch cache, sampling, counters."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from galley.engine.batching import ThroughputMeter, check_model_supported
from galley.engine.batching.batch import SequenceState, split_by_length
from galley.engine.batching.kv_cache import BatchKVCache, KVCacheFull
from galley.engine.batching.sampling import RowSampling, choose_next_tokens

HEADS, DIM, LAYERS = 2, 3, 2
SLOTS = 1024


def prefill_states(lengths: list[int], width: int, seed: int):
    """Left-padded per-layer keys/values (n, heads, width, dim) with distinct values, and their mask."""
    generator = torch.Generator().manual_seed(seed)
    keys = [torch.randn(len(lengths), HEADS, width, DIM, generator=generator) for _ in range(LAYERS)]
    values = [torch.randn(len(lengths), HEADS, width, DIM, generator=generator) for _ in range(LAYERS)]
    mask = torch.zeros(len(lengths), width, dtype=torch.bool)
    for row, length in enumerate(lengths):
        mask[row, width - length :] = True
        for tensor in (*keys, *values):
            tensor[row, :, : width - length] = 0
    return keys, values, mask


def real_tokens(cache: BatchKVCache, row: int, layer: int = 0) -> torch.Tensor:
    """The (heads, tokens, dim) keys of one row's real tokens, in order."""
    assert cache.mask is not None
    columns = cache.mask[row, : cache.length].nonzero()[:, 0]
    return cache.keys[layer][row, :, columns]


def original_tokens(keys: list[torch.Tensor], mask: torch.Tensor, row: int, layer: int = 0) -> torch.Tensor:
    return keys[layer][row, :, mask[row].nonzero()[:, 0]]


def test_cache_insert_aligns_rows_right():
    cache = BatchKVCache(LAYERS, slots=SLOTS)
    keys, values, mask = prefill_states([2, 5], width=5, seed=0)
    cache.insert(keys, values, mask)
    later_keys, later_values, later_mask = prefill_states([8], width=8, seed=1)
    cache.insert(later_keys, later_values, later_mask)

    assert cache.rows == 3
    assert cache.length == 8
    assert cache.mask is not None
    assert cache.mask[:3, cache.length - 1].all(), "every row must end at the last column"
    torch.testing.assert_close(real_tokens(cache, 0), original_tokens(keys, mask, 0))
    torch.testing.assert_close(real_tokens(cache, 1), original_tokens(keys, mask, 1))
    torch.testing.assert_close(real_tokens(cache, 2), original_tokens(later_keys, later_mask, 0))
    padding = ~cache.mask[:3, : cache.length]
    assert (cache.keys[1][:3, :, : cache.length].permute(0, 2, 1, 3)[padding] == 0).all(), (
        "padding must be zeros"
    )


def test_cache_remove_moves_last_row():
    cache = BatchKVCache(LAYERS, slots=SLOTS)
    keys, values, mask = prefill_states([3, 4, 2, 4], width=4, seed=2)
    cache.insert(keys, values, mask)
    moves = cache.remove([0, 2])

    assert cache.rows == 2
    assert moves == [(3, 0)]
    torch.testing.assert_close(real_tokens(cache, 0, layer=1), original_tokens(keys, mask, 3, layer=1))
    torch.testing.assert_close(real_tokens(cache, 1, layer=1), original_tokens(keys, mask, 1, layer=1))


def test_cache_trims_unused_leading_columns():
    cache = BatchKVCache(LAYERS, slots=SLOTS)
    keys, values, mask = prefill_states([40, 3, 5], width=40, seed=3)
    cache.insert(keys, values, mask)
    cache.remove([0])

    assert cache.length == 5
    torch.testing.assert_close(real_tokens(cache, 0), original_tokens(keys, mask, 2))
    torch.testing.assert_close(real_tokens(cache, 1), original_tokens(keys, mask, 1))


def test_cache_decode_write_grows_buffers():
    cache = BatchKVCache(LAYERS, slots=SLOTS)
    keys, values, mask = prefill_states([1], width=1, seed=4)
    cache.insert(keys, values, mask)
    for step in range(150):
        attention_mask = cache.decode_mask()
        assert attention_mask.shape == (1, cache.length + 1)
        state = torch.full((1, HEADS, 1, DIM), float(step))
        for layer in range(LAYERS):
            layer_keys, _ = cache.write(layer, state, state)
            assert layer_keys.shape[2] == cache.length + 1
        cache.advance(1)
    assert cache.length == 151
    assert cache.column_capacity >= 151
    assert cache.keys[0][0, 0, 1:151, 0].tolist() == [float(step) for step in range(150)]


def test_cache_reserve_rows_avoids_regrowth():
    cache = BatchKVCache(LAYERS, slots=SLOTS)
    cache.reserve_rows(10)
    keys, values, mask = prefill_states([2, 3, 3], width=3, seed=7)
    cache.insert(keys, values, mask)
    buffer = cache.keys[0].data_ptr()
    more_keys, more_values, more_mask = prefill_states([1] * 7, width=1, seed=8)
    cache.insert(more_keys, more_values, more_mask)

    assert cache.rows == 10
    assert cache.keys[0].data_ptr() == buffer, "the second insert reallocated the buffers"
    torch.testing.assert_close(real_tokens(cache, 9), original_tokens(more_keys, more_mask, 6))


def test_cache_relayout_keeps_tokens_in_pool():
    cache = BatchKVCache(LAYERS, slots=64)
    keys, values, mask = prefill_states([4, 5], width=5, seed=9)
    cache.insert(keys, values, mask)
    pool, allocated = cache.keys[0].data_ptr(), cache.allocated_bytes
    more_keys, more_values, more_mask = prefill_states([3, 1, 2, 3, 3, 2], width=3, seed=10)
    cache.insert(more_keys, more_values, more_mask)

    assert cache.rows == 8
    assert cache.row_capacity >= 8, "the view was not changed to hold the new rows"
    assert cache.row_capacity * cache.column_capacity <= 64
    assert cache.keys[0].data_ptr() == pool, "the re-view allocated new memory"
    assert cache.allocated_bytes == allocated == 2 * LAYERS * 64 * HEADS * DIM * 4
    for row in range(2):
        torch.testing.assert_close(
            real_tokens(cache, row, layer=1), original_tokens(keys, mask, row, layer=1)
        )
    for row in range(6):
        torch.testing.assert_close(
            real_tokens(cache, 2 + row, layer=1), original_tokens(more_keys, more_mask, row, layer=1)
        )


def test_cache_rejects_rows_beyond_slots():
    cache = BatchKVCache(LAYERS, slots=16)
    keys, values, mask = prefill_states([5, 5, 5], width=5, seed=11)
    with pytest.raises(KVCacheFull, match="3 rows of 6 columns"):
        cache.insert(keys, values, mask)


def test_cache_empties_when_last_row_leaves():
    cache = BatchKVCache(LAYERS, slots=SLOTS)
    keys, values, mask = prefill_states([3], width=3, seed=5)
    cache.insert(keys, values, mask)
    cache.remove([0])
    assert cache.rows == 0
    assert cache.length == 0
    assert cache.mask is None


def test_prefill_buckets_bound_padding():
    lengths = [int(x) for x in torch.randint(1, 60, (80,), generator=torch.Generator().manual_seed(6))]
    group = [
        SequenceState(future=Future(), prompt_ids=[0] * n, max_new_tokens=1, min_new_tokens=0, sampling=row())
        for n in lengths
    ]
    buckets = split_by_length(group, max_padding=0.15)

    assert sorted(id(s) for bucket in buckets for s in bucket) == sorted(id(s) for s in group)
    assert len(buckets) < len(group) // 4, "buckets should hold many prompts each"
    for bucket in buckets:
        widths = [len(s.prompt_ids) for s in bucket]
        if len(bucket) > 1:
            assert 1 - sum(widths) / (len(widths) * max(widths)) <= 0.15


# ---------------------------------------------------------------------------------------
# Sampling


def row(**overrides) -> RowSampling:
    settings = {"temperature": None, "top_p": None, "generator": None, "suppress_eos": False}
    settings.update(overrides)
    return RowSampling(**settings)


def test_greedy_picks_argmax_and_suppresses_eos():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0], [0.0, 5.0, 1.0, 4.0]])
    eos = torch.tensor([1])
    assert choose_next_tokens(logits.clone(), [row(), row(suppress_eos=True)], eos) == [1, 3]


def test_top_p_keeps_nucleus_only():
    probabilities = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probabilities.log().repeat(400, 1)
    generator = torch.Generator().manual_seed(0)
    rows = [row(temperature=1.0, top_p=0.7, generator=generator) for _ in range(400)]
    draws = choose_next_tokens(logits, rows, torch.tensor([], dtype=torch.long))
    assert set(draws) == {0, 1}, "top_p=0.7 must keep exactly the tokens with 0.5 and 0.3"


def test_sampling_follows_temperature():
    logits = torch.tensor([[2.0, 0.0]]).repeat(2000, 1)
    generator = torch.Generator().manual_seed(1)
    cold = choose_next_tokens(
        logits.clone(), [row(temperature=0.25, generator=generator)] * 2000, torch.tensor([])
    )
    hot = choose_next_tokens(
        logits.clone(), [row(temperature=4.0, generator=generator)] * 2000, torch.tensor([])
    )
    # p(token 1) is 1/(1+e^8) ~ 0.0003 at T=0.25 and 1/(1+e^0.5) ~ 0.38 at T=4.
    assert sum(cold) < 20
    assert 600 < sum(hot) < 900


def test_same_seed_same_draws():
    logits = torch.randn(1, 1000, generator=torch.Generator().manual_seed(2))

    def draws(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return [
            choose_next_tokens(logits.clone(), [row(temperature=1.0, generator=generator)], torch.tensor([]))[
                0
            ]
            for _ in range(20)
        ]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


# ---------------------------------------------------------------------------------------
# Counters and model checks


def test_throughput_window():
    now = [100.0]
    meter = ThroughputMeter(window_s=10.0, clock=lambda: now[0])
    meter.record(50)
    now[0] = 105.0
    meter.record(30)
    assert meter.total == 80
    assert meter.tokens_per_second() == pytest.approx(8.0)
    now[0] = 112.0
    assert meter.tokens_per_second() == pytest.approx(3.0)
    now[0] = 200.0
    assert meter.tokens_per_second() == 0.0
    assert meter.total == 80


def test_sliding_window_model_rejected():
    config = MistralConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=64,
        sliding_window=8,
    )
    with pytest.raises(ValueError, match="DynamicSlidingWindowLayer"):
        check_model_supported(MistralForCausalLM(config))
