"""Decode throughput of the batching scheduler against the memory-bandwidth bound.

A decode step reads every weight once, plus the KV cache of each row, so on a GPU its
time is at least (weight bytes + KV bytes read) / memory bandwidth. The bound on tokens per
second at batch B is therefore B * bandwidth / (weight bytes + KV bytes of B rows).
``python -m galley.gpu_check`` runs this on random-initialized 0.5B- and 8B-sized models at
batch 1 and 64; the functions also run on the CPU, where the tests exercise them.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from galley.engine.batching import GenerationRequest, Scheduler
from galley.engine.batching.kv_cache import kv_bytes_per_token

DECODE_BATCHES = (1, 64)
PROMPT_TOKENS = 128
NEW_TOKENS = 128


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, size_bytes: int = 1 << 30, repeats: int = 10) -> float:
    """Return the device's measured copy bandwidth in bytes per second, counting bytes read and written."""
    source = torch.empty(size_bytes // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    synchronize(device)
    elapsed = time.perf_counter() - started
    del source, target
    return repeats * 2 * size_bytes / elapsed


def measure_decode(
    model: Any,
    *,
    batch: int,
    bandwidth: float,
    prompt_tokens: int = PROMPT_TOKENS,
    new_tokens: int = NEW_TOKENS,
    seed: int = 0,
) -> dict[str, Any]:
    """Decode ``batch`` random prompts together and compare the decode tokens/s with the bandwidth bound.

    The first scheduler step (prefill and the first decode) is not timed, so the figure is
    decode alone. The model must be in eval mode.
    """
    if new_tokens < 3:
        raise ValueError(
            f"new_tokens={new_tokens} is too small; use 3 or more so that some decode steps are timed"
        )
    device = next(model.parameters()).device
    vocab_size = model.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(seed)
    prompts = torch.randint(1, vocab_size, (batch, prompt_tokens), generator=generator).tolist()
    scheduler = Scheduler(
        model,
        eos_token_ids=[],
        pad_token_id=0,
        kv_cache_len=batch * (prompt_tokens + new_tokens),
        tokens_to_generate=new_tokens,
    )
    futures = [scheduler.add(GenerationRequest(prompt, new_tokens)) for prompt in prompts]

    scheduler.step()  # prefill and the first decode step, untimed
    synchronize(device)
    started = time.perf_counter()
    steps = 0
    while scheduler.step():
        steps += 1
    synchronize(device)
    elapsed = time.perf_counter() - started
    assert all(len(future.result().ids) == new_tokens for future in futures)

    weight_bytes = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    # Each timed step reads the cache of every row, about prompt + new / 2 tokens long on average.
    kv_read = batch * (prompt_tokens + new_tokens // 2) * kv_bytes_per_token(model)
    tokens_per_s = batch * steps / elapsed
    bound = batch * bandwidth / (weight_bytes + kv_read)
    return {
        "batch": batch,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "decode_steps": steps,
        "seconds": round(elapsed, 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "bandwidth_bound_tokens_per_s": round(bound, 1),
        "share_of_bound": round(tokens_per_s / bound, 3),
        "weight_bytes": weight_bytes,
        "kv_bytes_read_per_step": kv_read,
    }
