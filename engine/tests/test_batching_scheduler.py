"""The batching scheduler against plain transformers on the tiny generated models."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from galley.engine.batching import GenerationRequest, Scheduler, SchedulerClosed
from galley.engine.errors import InvalidRequest, OpFailed

# Float32 reference logits must separate the top two tokens by more than this, so that
# float rounding differences between batched and single-sequence forwards (about 1e-5
# here) cannot flip a greedy choice.
MIN_TOP2_MARGIN = 1e-3

# (prompt length, max_new_tokens): mixed on purpose, including a one-token prompt and a
# one-token generation.
MIXED = [(1, 12), (3, 1), (7, 20), (12, 5), (20, 9), (33, 16), (5, 14)]


@dataclass
class TinyLM:
    model: torch.nn.Module
    eos_token_ids: list[int]
    pad_token_id: int | None


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir: Path) -> TinyLM:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    eos_ids = list(eos) if isinstance(eos, list) else [eos]
    return TinyLM(model, eos_ids, model.generation_config.pad_token_id)


def make_scheduler(lm: TinyLM, *, kv_cache_len: int = 4096, eos_token_ids: list[int] | None = None, **kwargs):
    return Scheduler(
        lm.model,
        eos_token_ids=lm.eos_token_ids if eos_token_ids is None else eos_token_ids,
        pad_token_id=lm.pad_token_id,
        kv_cache_len=kv_cache_len,
        tokens_to_generate=kwargs.pop("tokens_to_generate", 32),
        **kwargs,
    )


def random_prompt(length: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5000, (length,), generator=generator).tolist()


def reference(lm: TinyLM, prompt: list[int], max_new: int, *, eos: list[int] | None = None, min_new: int = 0):
    """Greedy continuation by transformers' generate, one prompt alone, and its smallest top-2 logit margin."""
    output = lm.model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=max_new,
        min_new_tokens=min_new,
        do_sample=False,
        eos_token_id=lm.eos_token_ids if eos is None else eos,
        pad_token_id=lm.pad_token_id if lm.pad_token_id is not None else 0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    ids = output.sequences[0, len(prompt) :].tolist()
    margins = [float(top[0] - top[1]) for top in (scores[0].topk(2).values for scores in output.scores)]
    return ids, min(margins)


def run_to_completion(scheduler: Scheduler, futures, max_steps: int = 1000):
    for _ in range(max_steps):
        if not scheduler.step():
            break
    assert all(future.done() for future in futures), "scheduler stopped stepping with requests unfinished"
    return [future.result() for future in futures]


# ---------------------------------------------------------------------------------------
# Greedy equality with transformers


def test_greedy_matches_generate_mixed(tiny_lm: TinyLM):
    prompts = [random_prompt(length, seed) for seed, (length, _) in enumerate(MIXED)]
    expected = []
    for prompt, (_, max_new) in zip(prompts, MIXED, strict=True):
        ids, margin = reference(tiny_lm, prompt, max_new)
        assert margin > MIN_TOP2_MARGIN, f"reference logits nearly tied ({margin:.2e}); pick other prompts"
        expected.append(ids)

    scheduler = make_scheduler(tiny_lm)
    futures = [
        scheduler.add(GenerationRequest(prompt, max_new))
        for prompt, (_, max_new) in zip(prompts, MIXED, strict=True)
    ]
    results = run_to_completion(scheduler, futures)

    for result, ids, prompt in zip(results, expected, prompts, strict=True):
        assert result.ids == ids
        assert result.prompt_tokens == len(prompt)
        assert result.finish_reason == ("eos" if ids[-1] in tiny_lm.eos_token_ids else "length")
    assert scheduler.stats().reserved_tokens == 0


def test_greedy_matches_when_cache_forces_joins(tiny_lm: TinyLM):
    """A small kv_cache_len admits a few sequences at a time; the others join as rows leave."""
    prompts = [random_prompt(length, 100 + seed) for seed, (length, _) in enumerate(MIXED)]
    expected = [
        reference(tiny_lm, prompt, max_new)[0] for prompt, (_, max_new) in zip(prompts, MIXED, strict=True)
    ]

    scheduler = make_scheduler(tiny_lm, kv_cache_len=64)
    futures = [
        scheduler.add(GenerationRequest(prompt, max_new))
        for prompt, (_, max_new) in zip(prompts, MIXED, strict=True)
    ]
    peak_running, saw_waiting = 0, False
    for _ in range(1000):
        if not scheduler.step():
            break
        stats = scheduler.stats()
        assert stats.reserved_tokens <= 64
        peak_running = max(peak_running, stats.running)
        saw_waiting = saw_waiting or stats.waiting > 0

    assert saw_waiting, "the budget never held a request back; the test no longer exercises joining"
    assert peak_running >= 2, "sequences never shared a decode step"
    assert [future.result().ids for future in futures] == expected


def test_cache_memory_stays_within_kv_cache_len(tiny_lm: TinyLM):
    """One long sequence among short ones: the padded rows never take more slots than kv_cache_len."""
    kv_cache_len = 96
    cases = [(60, 20), (2, 6), (3, 4), (4, 9), (2, 3), (5, 7), (3, 12), (6, 2)]
    prompts = [random_prompt(length, 200 + seed) for seed, (length, _) in enumerate(cases)]
    expected = [
        reference(tiny_lm, prompt, max_new)[0] for prompt, (_, max_new) in zip(prompts, cases, strict=True)
    ]
    config = tiny_lm.model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    # Keys and values, float32.
    slot_bytes = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4

    scheduler = make_scheduler(tiny_lm, kv_cache_len=kv_cache_len)
    futures = [
        scheduler.add(GenerationRequest(prompt, max_new))
        for prompt, (_, max_new) in zip(prompts, cases, strict=True)
    ]
    cache = scheduler._batch.cache
    held_back = False
    for _ in range(1000):
        if not scheduler.step():
            break
        stats = scheduler.stats()
        assert stats.kv_cache_bytes == kv_cache_len * slot_bytes
        assert cache.rows * cache.length <= kv_cache_len
        assert cache.row_capacity * cache.column_capacity <= kv_cache_len
        # The token budget alone would admit every short request next to the long one.
        held_back = held_back or (stats.waiting > 0 and stats.reserved_tokens + 10 <= kv_cache_len)

    assert held_back, "the padded-slot budget never held a request back; the test no longer exercises it"
    assert [future.result().ids for future in futures] == expected


def test_joining_rows_reshape_cache_between_steps(tiny_lm: TinyLM):
    """Rows joining a running batch change the cache's view, from a step outside inference mode as in the worker."""
    cases = [(4, 12), (5, 10), (6, 10)]
    prompts = [random_prompt(length, 300 + seed) for seed, (length, _) in enumerate(cases)]
    expected = [
        reference(tiny_lm, prompt, max_new)[0] for prompt, (_, max_new) in zip(prompts, cases, strict=True)
    ]
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[], kv_cache_len=64)
    first = scheduler.add(GenerationRequest(prompts[0], cases[0][1]))
    for _ in range(3):
        scheduler.step()
    view_before = scheduler._batch.cache.column_capacity
    later = [
        scheduler.add(GenerationRequest(prompt, max_new))
        for prompt, (_, max_new) in zip(prompts[1:], cases[1:], strict=True)
    ]
    scheduler.step()

    assert scheduler.stats().running == 3
    assert scheduler._batch.cache.column_capacity != view_before, "the join no longer changes the cache view"
    results = run_to_completion(scheduler, [first, *later])
    assert [result.ids for result in results] == expected


def test_unwritten_cache_memory_is_never_read(tiny_lm: TinyLM, monkeypatch: pytest.MonkeyPatch):
    """The pools start uninitialized; filled with NaN here, any read of an unwritten slot would show in the output."""
    from galley.engine.batching import kv_cache

    def nan_pool(size: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return torch.full((size,), float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(kv_cache.torch, "empty", nan_pool)
    monkeypatch.setattr(kv_cache.torch, "empty_like", lambda pool: torch.full_like(pool, float("nan")))
    prompts = [random_prompt(length, 400 + seed) for seed, (length, _) in enumerate(MIXED)]
    expected = [
        reference(tiny_lm, prompt, max_new)[0] for prompt, (_, max_new) in zip(prompts, MIXED, strict=True)
    ]
    scheduler = make_scheduler(tiny_lm, kv_cache_len=160)
    futures = [
        scheduler.add(GenerationRequest(prompt, max_new))
        for prompt, (_, max_new) in zip(prompts, MIXED, strict=True)
    ]
    assert [result.ids for result in run_to_completion(scheduler, futures)] == expected


def test_greedy_matches_with_max_batch_size(tiny_lm: TinyLM):
    prompts = [random_prompt(length, 200 + seed) for seed, (length, _) in enumerate(MIXED)]
    expected = [
        reference(tiny_lm, prompt, max_new)[0] for prompt, (_, max_new) in zip(prompts, MIXED, strict=True)
    ]
    scheduler = make_scheduler(tiny_lm, max_batch_size=2, max_prefill_tokens=16)
    futures = [
        scheduler.add(GenerationRequest(prompt, max_new))
        for prompt, (_, max_new) in zip(prompts, MIXED, strict=True)
    ]
    for _ in range(1000):
        if not scheduler.step():
            break
        assert scheduler.stats().running <= 2
    assert [future.result().ids for future in futures] == expected


# ---------------------------------------------------------------------------------------
# Stopping


def test_eos_stops_sequence(tiny_lm: TinyLM):
    prompt = random_prompt(9, 300)
    free_run, _ = reference(tiny_lm, prompt, 12)
    stop_token = free_run[3]
    assert stop_token not in free_run[:3], "pick another prompt: the stop token appears earlier"

    expected, _ = reference(tiny_lm, prompt, 12, eos=[stop_token])
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[stop_token])
    other = scheduler.add(GenerationRequest(random_prompt(4, 301), 12))
    future = scheduler.add(GenerationRequest(prompt, 12))
    result, _ = run_to_completion(scheduler, [future, other])

    assert result.ids == expected == free_run[:4]
    assert result.finish_reason == "eos"


def test_min_new_tokens_suppresses_eos(tiny_lm: TinyLM):
    prompt = random_prompt(9, 300)
    free_run, _ = reference(tiny_lm, prompt, 12)
    stop_token = free_run[3]

    expected, margin = reference(tiny_lm, prompt, 12, eos=[stop_token], min_new=6)
    assert margin > MIN_TOP2_MARGIN
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[stop_token])
    future = scheduler.add(GenerationRequest(prompt, 12, min_new_tokens=6))
    (result,) = run_to_completion(scheduler, [future])

    assert result.ids == expected
    assert len(result.ids) >= 6
    assert stop_token not in result.ids[:6]


def test_tokens_to_generate_is_default(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[], tokens_to_generate=7)
    (result,) = run_to_completion(scheduler, [scheduler.add(GenerationRequest(random_prompt(5, 400)))])
    assert len(result.ids) == 7
    assert result.finish_reason == "length"


def test_max_new_tokens_clamped_to_cache(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[], kv_cache_len=20)
    (result,) = run_to_completion(scheduler, [scheduler.add(GenerationRequest(random_prompt(15, 401), 50))])
    assert len(result.ids) == 5
    assert result.finish_reason == "length"


# ---------------------------------------------------------------------------------------
# Rejected requests


def test_prompt_over_cache_rejected(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm, kv_cache_len=32)
    fine = scheduler.add(GenerationRequest(random_prompt(10, 500), 4))
    with pytest.raises(InvalidRequest) as raised:
        scheduler.add(GenerationRequest(random_prompt(32, 501), 4))
    message = str(raised.value)
    assert "32 tokens" in message
    assert "kv_cache_len=32" in message
    assert "kv_cache_len >= 33" in message

    (result,) = run_to_completion(scheduler, [fine])
    assert len(result.ids) >= 1


def test_prompt_filling_cache_gets_one_token(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[], kv_cache_len=32)
    (result,) = run_to_completion(scheduler, [scheduler.add(GenerationRequest(random_prompt(31, 502), 8))])
    assert len(result.ids) == 1


@pytest.mark.parametrize(
    ("request_kwargs", "fragment"),
    [
        ({"prompt_ids": []}, "prompt_ids is empty"),
        ({"prompt_ids": [1, -4]}, "outside the vocabulary"),
        ({"prompt_ids": [1, True]}, "outside the vocabulary"),
        ({"prompt_ids": [1], "max_new_tokens": 0}, "max_new_tokens=0"),
        ({"prompt_ids": [1], "max_new_tokens": 2, "min_new_tokens": 3}, "min_new_tokens=3 exceeds"),
        ({"prompt_ids": [1], "min_new_tokens": 40}, "tokens_to_generate=32"),
        ({"prompt_ids": [1], "temperature": -1.0}, "temperature=-1.0"),
        ({"prompt_ids": [1], "top_p": 0.0}, "top_p=0.0"),
        ({"prompt_ids": [1], "top_p": 1.5}, "top_p=1.5"),
    ],
)
def test_invalid_request_rejected(tiny_lm: TinyLM, request_kwargs: dict, fragment: str):
    scheduler = make_scheduler(tiny_lm)
    with pytest.raises(InvalidRequest, match=fragment):
        scheduler.add(GenerationRequest(**request_kwargs))


# ---------------------------------------------------------------------------------------
# Sampling


def sample_alone_and_batched(lm: TinyLM, request: GenerationRequest) -> tuple[list[int], list[int]]:
    alone = make_scheduler(lm, eos_token_ids=[])
    (first,) = run_to_completion(alone, [alone.add(request)])
    crowded = make_scheduler(lm, eos_token_ids=[])
    traffic = [
        crowded.add(GenerationRequest(random_prompt(3 + i, 600 + i), 10, temperature=1.0)) for i in range(4)
    ]
    target = crowded.add(request)
    results = run_to_completion(crowded, [*traffic, target])
    return first.ids, results[-1].ids


def test_seeded_sampling_reproducible(tiny_lm: TinyLM):
    request = GenerationRequest(random_prompt(6, 610), 16, temperature=1.0, top_p=0.9, seed=1234)
    alone, batched = sample_alone_and_batched(tiny_lm, request)
    assert alone == batched

    greedy, _ = reference(tiny_lm, request.prompt_ids, 16, eos=[])
    other_seed = make_scheduler(tiny_lm, eos_token_ids=[])
    seeds = [
        other_seed.add(GenerationRequest(request.prompt_ids, 16, temperature=1.0, seed=s)) for s in range(4)
    ]
    outputs = [result.ids for result in run_to_completion(other_seed, seeds)]
    assert len({tuple(ids) for ids in outputs}) > 1, "different seeds gave identical samples"
    assert any(ids != greedy for ids in outputs), "temperature 1.0 sampling always matched greedy"


def test_tiny_top_p_is_greedy(tiny_lm: TinyLM):
    prompt = random_prompt(8, 620)
    greedy, _ = reference(tiny_lm, prompt, 10, eos=[])
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[])
    future = scheduler.add(GenerationRequest(prompt, 10, temperature=2.0, top_p=1e-6, seed=0))
    (result,) = run_to_completion(scheduler, [future])
    assert result.ids == greedy


# ---------------------------------------------------------------------------------------
# Asyncio front and thread loop


async def test_submit_from_asyncio(tiny_lm: TinyLM):
    prompts = [random_prompt(length, 700 + seed) for seed, (length, _) in enumerate(MIXED)]
    expected = [
        reference(tiny_lm, prompt, max_new)[0] for prompt, (_, max_new) in zip(prompts, MIXED, strict=True)
    ]
    scheduler = make_scheduler(tiny_lm, kv_cache_len=80)
    scheduler.start()
    try:
        results = await asyncio.gather(
            *(scheduler.submit(GenerationRequest(p, n)) for p, (_, n) in zip(prompts, MIXED, strict=True))
        )
    finally:
        scheduler.close(timeout=30)
    assert [result.ids for result in results] == expected
    stats = scheduler.stats()
    assert stats.requests_finished == len(MIXED)
    assert stats.tokens_generated == sum(len(ids) for ids in expected)
    assert stats.tokens_per_second > 0


def test_cancelled_submit_frees_cache(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[], kv_cache_len=40)
    blocker = scheduler.add(GenerationRequest(random_prompt(4, 710), 30))
    scheduler.step()
    assert scheduler.stats().running == 1

    waiting = scheduler.add(GenerationRequest(random_prompt(4, 711), 8))
    scheduler.step()
    assert scheduler.stats().waiting == 1, "the second request should wait for room"

    blocker.cancel()
    (result,) = run_to_completion(scheduler, [waiting])
    assert len(result.ids) == 8
    assert scheduler.stats().reserved_tokens == 0


def test_close_fails_pending(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm)
    future = scheduler.add(GenerationRequest(random_prompt(4, 720), 8))
    scheduler.close()
    with pytest.raises(SchedulerClosed):
        future.result(timeout=5)
    with pytest.raises(SchedulerClosed):
        scheduler.add(GenerationRequest(random_prompt(4, 721), 8))


def test_for_model_reads_generation_config(tiny_lm: TinyLM):
    scheduler = Scheduler.for_model(tiny_lm.model, kv_cache_len=256, tokens_to_generate=8)
    assert scheduler.eos_token_ids == set(tiny_lm.eos_token_ids)
    assert scheduler.pad_token_id == (tiny_lm.pad_token_id or 0)
    prompt = random_prompt(6, 730)
    (result,) = run_to_completion(scheduler, [scheduler.add(GenerationRequest(prompt))])
    assert result.ids == reference(tiny_lm, prompt, 8)[0]


def test_call_runs_between_steps(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm)
    future = scheduler.call(lambda: 6 * 7)
    scheduler.step()
    assert future.result(timeout=1) == 42


# ---------------------------------------------------------------------------------------
# Failures inside the forward


def test_decode_failure_fails_batch_only(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm, eos_token_ids=[])
    failing = {"on": False}

    def fail_when_armed(module, args, kwargs):
        if failing["on"]:
            raise RuntimeError("injected forward failure")

    handle = tiny_lm.model.register_forward_pre_hook(fail_when_armed, with_kwargs=True)
    try:
        doomed = scheduler.add(GenerationRequest(random_prompt(5, 800), 10))
        scheduler.step()  # prefill and a first decode succeed
        failing["on"] = True
        scheduler.step()
        failing["on"] = False
        with pytest.raises(OpFailed, match="injected forward failure"):
            doomed.result(timeout=1)

        prompt = random_prompt(6, 801)
        later = scheduler.add(GenerationRequest(prompt, 6))
        (result,) = run_to_completion(scheduler, [later])
    finally:
        handle.remove()
    assert result.ids == reference(tiny_lm, prompt, 6, eos=[])[0]
    stats = scheduler.stats()
    assert stats.requests_failed == 1
    assert stats.reserved_tokens == 0


# ---------------------------------------------------------------------------------------
# Log-probabilities


def single_logprobs(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_logprobs_match_single_forward(tiny_lm: TinyLM):
    sequences = [random_prompt(length, 900 + length) for length in (1, 2, 9, 30, 17)]
    scheduler = make_scheduler(tiny_lm, logprobs_max_batch_tokens=40)
    first = scheduler.add_logprobs(sequences[:3])
    second = scheduler.add_logprobs(sequences[3:])
    scheduler.step()
    values = first.result(timeout=1) + second.result(timeout=1)

    assert [len(v) for v in values] == [0, 1, 8, 29, 16]
    for sequence, got in zip(sequences, values, strict=True):
        if len(sequence) > 1:
            torch.testing.assert_close(
                torch.tensor(got), single_logprobs(tiny_lm.model, sequence), atol=1e-4, rtol=0
            )


def test_logprobs_reject_bad_token(tiny_lm: TinyLM):
    scheduler = make_scheduler(tiny_lm)
    with pytest.raises(InvalidRequest, match="sequence 1 contains token id"):
        scheduler.add_logprobs([[1, 2], [3, 10**9]])


# ---------------------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
def test_greedy_matches_generate_cuda(tiny_model_dir: Path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).to("cuda").eval()
    eos = model.generation_config.eos_token_id
    lm = TinyLM(model, list(eos) if isinstance(eos, list) else [eos], model.generation_config.pad_token_id)
    prompts = [random_prompt(length, 1000 + seed) for seed, (length, _) in enumerate(MIXED)]
    expected = []
    for prompt, (_, max_new) in zip(prompts, MIXED, strict=True):
        output = model.generate(
            torch.tensor([prompt], device="cuda"),
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=lm.eos_token_ids,
            pad_token_id=lm.pad_token_id or 0,
        )
        expected.append(output[0, len(prompt) :].tolist())
    scheduler = make_scheduler(lm)
    futures = [scheduler.add(GenerationRequest(p, n)) for p, (_, n) in zip(prompts, MIXED, strict=True)]
    assert [result.ids for result in run_to_completion(scheduler, futures)] == expected


def test_token_limit_keeps_ids_inside_tokenizer(tiny_lm: TinyLM):
    # A limit below the ids that greedy decoding picks must keep every generated id under it.
    # This holds for greedy and sampled requests alike.
    limit = 1000
    unlimited = make_scheduler(tiny_lm, eos_token_ids=[])
    (free,) = run_to_completion(unlimited, [unlimited.add(GenerationRequest(random_prompt(6, 500), 12))])
    assert any(token >= limit for token in free.ids), "the test needs a prompt whose greedy ids pass the limit"

    limited = make_scheduler(tiny_lm, eos_token_ids=[], token_limit=limit)
    futures = [
        limited.add(GenerationRequest(random_prompt(6, 500), 12)),
        limited.add(GenerationRequest(random_prompt(9, 501), 12, temperature=1.5, seed=3)),
    ]
    for result in run_to_completion(limited, futures):
        assert len(result.ids) == 12
        assert max(result.ids) < limit, result.ids
