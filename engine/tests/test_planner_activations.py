"""The GPU check's measurements, run on the CPU: planned components against real tensors.

``galley.gpu_check`` counts gradient, optimizer, master-weight, adapter and KV tensors, and
the tensors autograd saves for backward; none of that needs CUDA. These tests run its cases
on small random models, so the planner's exact terms must match to the byte and its
activation estimate must stay close to what autograd saves.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from galley import gpu_check  # noqa: E402
from galley.planner import architecture_facts, plan_spawn  # noqa: E402
from galley.planner.resources import find_architecture  # noqa: E402

torch.set_num_threads(1)

EXACT = ("weights", "adapter", "gradients", "optimizer_state", "master_weights", "kv_cache", "attention_mask")
CPU = torch.device("cpu")


def small_config(key: str) -> dict:
    config = json.loads(find_architecture(key).config_path.read_text())
    config.update(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4)
    config.update(num_key_value_heads=2, vocab_size=512)
    if "head_dim" in config:
        config["head_dim"] = 32
    # Token ids of the real vocabulary are out of range here; the checks do not use them.
    for key_name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        config.pop(key_name, None)
    return config


def ratios(result: dict) -> dict[str, float]:
    return {row["component"]: row["ratio"] for row in result["comparison"]}


ARCHITECTURES = ["llama-3.1-8b-instruct", "qwen2.5-0.5b-instruct", "qwen3-8b"]


@pytest.mark.parametrize("key", ARCHITECTURES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_training_components_match_tensors(key, dtype):
    config = small_config(key)
    facts = architecture_facts(config, name=key)
    model = gpu_check.build_model(config, getattr(torch, dtype), CPU)
    probe = gpu_check.MemoryProbe(CPU)

    full = ratios(gpu_check.run_case(gpu_check.Case("train", False, 64), model, facts, probe, dtype))
    lora = ratios(
        gpu_check.run_case(gpu_check.Case("train", True, 64), gpu_check.wrap_lora(model), facts, probe, dtype)
    )

    for name in EXACT:
        if name in full:
            assert full[name] == 1.0, f"full training {name}"
        if name in lora:
            assert lora[name] == 1.0, f"LoRA training {name}"
    assert ("master_weights" in full) == (dtype == "bfloat16")
    # The estimate counts a dropout mask for every LoRA input. The first layer's inputs need
    # none, so on a 2-layer model LoRA's estimate runs a little high.
    assert 0.97 <= full["activations"] <= 1.03
    assert 0.85 <= lora["activations"] <= 1.0


@pytest.mark.parametrize("key", ARCHITECTURES)
def test_inference_components_match_tensors(key):
    config = small_config(key)
    facts = architecture_facts(config, name=key)
    model = gpu_check.build_model(config, torch.bfloat16, CPU)
    result = gpu_check.run_case(
        gpu_check.Case("inference", False, 40), model, facts, gpu_check.MemoryProbe(CPU), "bfloat16"
    )
    assert ratios(result) == {"weights": 1.0, "kv_cache": 1.0}
    assert result["measured"]["prefill_peak_above_weights"] is None  # no allocator counters on the CPU


def test_packed_position_ids():
    assert gpu_check.packed_position_ids(10, 2, CPU).tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]]
    assert gpu_check.packed_position_ids(7, 2, CPU).tolist() == [[0, 1, 2, 3, 0, 1, 2]]


def test_default_cases_order():
    cases = gpu_check.default_cases()
    labels = [case.label for case in cases]
    assert labels[0].startswith("inference_")
    assert labels[-1].startswith("lora_training_")
    first_lora = next(i for i, case in enumerate(cases) if case.adapter)
    assert all(case.adapter for case in cases[first_lora:])


def test_compare_pairs_planned_and_measured():
    facts = find_architecture("qwen2.5-0.5b-instruct").facts()
    plan = plan_spawn(facts, "train", 1, max_batch_size=256)
    measured = {
        "weights": plan.components["weights"],
        "gradients": plan.components["gradients"] // 2,
        "step_peak": plan.total,
        "process_bytes": None,
    }
    rows = {row["component"]: row for row in gpu_check.compare(plan, measured)}
    assert rows["weights"]["ratio"] == 1.0
    assert rows["gradients"]["ratio"] == 0.5
    expected = plan.total / (plan.total - plan.components["overhead"])
    assert rows["total_without_overhead"]["ratio"] == round(expected, 4)
    assert "total" not in rows  # no NVML reading
    assert "overhead" not in rows
    assert "optimizer_state" not in rows  # not measured


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report written without a GPU")
def test_main_without_cuda_writes_error(tmp_path):
    out = tmp_path / "report.json"
    assert gpu_check.main(["--out", str(out), "--skip-tests"]) == 2
    report = json.loads(out.read_text())
    assert "no CUDA device" in report["error"]
