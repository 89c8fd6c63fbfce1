"""The decode-throughput measurement of the GPU check, run on the CPU with a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from galley.bench.decode import copy_bandwidth, measure_decode
from galley.engine.batching.kv_cache import kv_bytes_per_token


@pytest.fixture(scope="module")
def model(tiny_llama_dir: Path):
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()


def test_copy_bandwidth_positive():
    assert copy_bandwidth(torch.device("cpu"), size_bytes=1 << 22, repeats=2) > 0


def test_measure_decode_counts_decode_steps(model):
    with torch.inference_mode():
        result = measure_decode(model, batch=3, bandwidth=1e10, prompt_tokens=5, new_tokens=6)

    assert result["decode_steps"] == 4, "prefill gives token 1 and the untimed step token 2"
    assert result["tokens_per_s"] > 0
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert result["weight_bytes"] == weights
    assert result["kv_bytes_read_per_step"] == 3 * (5 + 3) * kv_bytes_per_token(model)
    expected_bound = 3 * 1e10 / (weights + result["kv_bytes_read_per_step"])
    assert result["bandwidth_bound_tokens_per_s"] == pytest.approx(expected_bound, rel=1e-3)


def test_measure_decode_rejects_too_few_tokens(model):
    with pytest.raises(ValueError, match="new_tokens=2"):
        measure_decode(model, batch=1, bandwidth=1e10, new_tokens=2)
