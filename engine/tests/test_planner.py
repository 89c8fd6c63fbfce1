"""Planner: architecture facts of the public configs, per-rank plans, admission and advice.

These tests load no torch; test_planner_models.py compares the planner with real models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from galley.planner import (
    GIB,
    ArchitectureError,
    DeviceCapacity,
    InvalidRequest,
    SpawnRefused,
    admit,
    architecture_facts,
    format_gib,
    plan_spawn,
)
from galley.planner.__main__ import main as planner_main
from galley.planner.resources import find_architecture, list_architectures
from galley.planner.sharding import kv_heads_on_rank, split_sizes

ENGINE_DIR = Path(__file__).resolve().parents[1]


def facts_of(key: str):
    return find_architecture(key).facts()


def data_of(raised: pytest.ExceptionInfo[SpawnRefused]) -> dict:
    data = raised.value.data
    assert data is not None, "SpawnRefused carries no data"
    return data


def gpus(*free_gib: float, total_gib: float = 80):
    return [
        DeviceCapacity(
            id=f"cuda:{index}", total_bytes=int(total_gib * GIB), free_bytes=int(free * GIB), kind="cuda"
        )
        for index, free in enumerate(free_gib)
    ]


# ---------------------------------------------------------------------------------------
# Architecture facts


@pytest.mark.parametrize(
    ("key", "parameters"),
    [
        ("llama-3.1-8b-instruct", 8_030_261_248),
        ("qwen3-32b", 32_762_123_264),
        ("qwen2.5-0.5b-instruct", 494_032_768),
        ("llama-3.1-70b-instruct", 70_553_706_496),
        ("mistral-7b-instruct-v0.3", 7_248_023_552),
    ],
)
def test_parameter_count_of_public_config(key, parameters):
    assert facts_of(key).parameters == parameters


@pytest.mark.parametrize(
    ("key", "kv_bytes"),
    [("llama-3.1-8b-instruct", 131_072), ("qwen3-32b", 262_144), ("qwen2.5-0.5b-instruct", 12_288)],
)
def test_bf16_kv_bytes_per_token(key, kv_bytes):
    facts = facts_of(key)
    assert facts.dtype == "bfloat16"
    assert facts.kv_bytes_per_token(2, tp=1) == kv_bytes
    plan = plan_spawn(facts, "inference", 1, kv_cache_len=1000)
    assert plan.components["kv_cache"] == 1000 * kv_bytes


def test_facts_of_qwen3_32b():
    facts = facts_of("qwen3-32b")
    assert (facts.family, facts.architecture) == ("qwen3", "Qwen3ForCausalLM")
    assert (facts.layers, facts.heads, facts.kv_heads, facts.head_dim) == (64, 64, 8, 128)
    assert (facts.hidden, facts.intermediate, facts.vocab) == (5120, 25600, 151936)
    assert facts.weights_source == "config"
    record = facts.to_dict()
    for key in (
        "family",
        "architecture",
        "parameters",
        "layers",
        "heads",
        "kv_heads",
        "hidden",
        "vocab",
        "dtype",
    ):
        assert key in record


def test_every_resource_entry_plans():
    resources = list_architectures()
    assert len(resources) >= 8
    for resource in resources:
        assert resource.key == resource.key.lower()
        assert resource.config_path.is_file()
        facts = resource.facts()
        assert facts.name == resource.name
        assert facts.parameters > 0


def test_config_dtype_key_read():
    config = json.loads(find_architecture("qwen3-0.6b").config_path.read_text())
    config.pop("torch_dtype")
    config["dtype"] = "float16"
    assert architecture_facts(config).dtype == "float16"
    config.pop("dtype")
    assert architecture_facts(config).dtype == "float32"


def test_config_problems_listed_together():
    with pytest.raises(ArchitectureError) as raised:
        architecture_facts({"model_type": "llama", "hidden_size": 64, "num_attention_heads": "four"})
    message = str(raised.value)
    assert "intermediate_size is missing" in message
    assert "num_hidden_layers is missing" in message
    assert "num_attention_heads='four' is not a positive integer" in message


def test_kv_heads_must_divide_heads():
    config = json.loads(find_architecture("llama-3.1-8b-instruct").config_path.read_text())
    config["num_key_value_heads"] = 5
    with pytest.raises(ArchitectureError, match="num_key_value_heads=5"):
        architecture_facts(config)


def test_unknown_family_without_weights():
    config = json.loads(find_architecture("llama-3.1-8b-instruct").config_path.read_text())
    config["model_type"] = "gemma2"
    with pytest.raises(ArchitectureError, match="'gemma2' is not supported without weights"):
        architecture_facts(config)


def test_tied_embeddings_counted_once():
    config = json.loads(find_architecture("qwen3-0.6b").config_path.read_text())
    tied = architecture_facts(config).parameters
    config["tie_word_embeddings"] = False
    untied = architecture_facts(config).parameters
    assert untied - tied == config["vocab_size"] * config["hidden_size"]


# ---------------------------------------------------------------------------------------
# Tensor parallelism


def test_split_sizes_uneven():
    assert split_sizes(10, 4) == [3, 3, 2, 2]
    assert sum(split_sizes(151_936, 7)) == 151_936


def test_kv_heads_replicated_beyond_count():
    # Qwen2.5-0.5B: 14 query heads, 2 KV heads; at tp=7 rank 3 has query heads 6 and 7,
    # which use different KV heads.
    assert [kv_heads_on_rank(14, 2, 7, rank) for rank in range(7)] == [1, 1, 1, 2, 1, 1, 1]
    assert [kv_heads_on_rank(32, 8, 16, rank) for rank in range(16)] == [1] * 16
    assert [kv_heads_on_rank(32, 8, 4, rank) for rank in range(4)] == [2] * 4


def test_tp_split_sums_to_parameters_plus_replicas():
    facts = facts_of("llama-3.1-8b-instruct")
    per_rank = facts.weight_elements_per_rank(2)
    replicated = sum(t.numel for t in facts.tensors if t.role == "replicated")
    assert sum(per_rank) == facts.parameters + replicated
    assert per_rank[0] == per_rank[1]


def test_tp_replicates_kv_heads_beyond_their_count():
    facts = facts_of("llama-3.1-8b-instruct")  # 8 KV heads
    kv_elements = sum(t.numel for t in facts.tensors if t.role in ("k", "v"))
    replicated = sum(t.numel for t in facts.tensors if t.role == "replicated")
    per_rank = facts.weight_elements_per_rank(16)
    # Every rank keeps one of 8 KV heads, so the K/V weights exist twice over.
    assert sum(per_rank) == facts.parameters + 15 * replicated + kv_elements


def test_plan_per_rank_kv_cache_at_tp():
    facts = facts_of("qwen2.5-0.5b-instruct")
    plan = plan_spawn(facts, "inference", 7, kv_cache_len=100)
    kv = [rank.components["kv_cache"] for rank in plan.ranks]
    per_head = 100 * 2 * facts.layers * facts.head_dim * 2
    assert kv == [per_head, per_head, per_head, 2 * per_head, per_head, per_head, per_head]
    assert plan.total == plan.ranks[3].total


def test_tp_not_dividing_heads_refused():
    facts = facts_of("qwen2.5-0.5b-instruct")
    with pytest.raises(SpawnRefused) as raised:
        plan_spawn(facts, "inference", 4, kv_cache_len=1024)
    assert raised.value.message == (
        "tp=4 does not divide Qwen2.5-0.5B-Instruct's 14 attention heads; use 1, 2, 7 or 14"
    )
    assert data_of(raised)["reason"] == "tp_invalid"
    assert data_of(raised)["valid_tp"] == [1, 2, 7, 14]


def test_tp_exceeding_devices_refused():
    plan = plan_spawn(facts_of("qwen3-8b"), "inference", 4, kv_cache_len=1024)
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, gpus(80, 80))
    assert "tp=4 needs 4 devices but 2 are available (cuda:0, cuda:1)" in raised.value.message
    assert "use tp=1 or 2" in raised.value.message
    assert data_of(raised)["reason"] == "tp_exceeds_devices"


# ---------------------------------------------------------------------------------------
# Plans


def test_full_training_components():
    facts = facts_of("llama-3.1-8b-instruct")
    plan = plan_spawn(facts, "train", 1, max_batch_size=1024)
    parameters = facts.parameters
    assert plan.components["weights"] == parameters * 2
    assert plan.components["gradients"] == parameters * 4
    assert plan.components["optimizer_state"] == parameters * 8
    assert plan.components["master_weights"] == parameters * 4
    assert plan.components["logits"] == 1024 * facts.vocab * (2 + 8)
    assert plan.components["attention_mask"] == facts.layers * 1024 * 1024 * 2
    assert plan.components["overhead"] == 500 * 1024**2
    assert "kv_cache" not in plan.components
    assert plan.total == sum(plan.components.values())


def test_activations_scale_with_tokens():
    facts = facts_of("qwen3-8b")
    small = plan_spawn(facts, "train", 1, max_batch_size=1000)
    large = plan_spawn(facts, "train", 1, max_batch_size=2000)
    assert large.components["activations"] == 2 * small.components["activations"]
    assert large.components["attention_mask"] == 4 * small.components["attention_mask"]


def test_adapter_training_components():
    facts = facts_of("llama-3.1-8b-instruct")
    plan = plan_spawn(facts, "train", 1, max_batch_size=1024, adapter=True)
    # r=16 on q, k, v, o, gate, up, down of 32 layers.
    per_layer = (4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096) + 2 * (4096 + 14336) + (14336 + 4096)
    lora = 16 * per_layer * 32
    assert plan.components["adapter"] == lora * 4
    assert plan.components["gradients"] == lora * 4
    assert plan.components["optimizer_state"] == lora * 8
    assert "master_weights" not in plan.components
    assert plan.components["weights"] == facts.parameters * 2


def test_scoring_value_head_trained():
    facts = facts_of("qwen2.5-0.5b-instruct")
    plan = plan_spawn(facts, "train", 1, max_batch_size=512, adapter=True, scoring=True)
    plain = plan_spawn(facts, "train", 1, max_batch_size=512, adapter=True)
    head = facts.hidden + 1
    assert plan.components["value_head"] == head * 4
    assert plan.components["gradients"] - plain.components["gradients"] == head * 4
    assert plan.components["optimizer_state"] - plain.components["optimizer_state"] == head * 8


def test_cpu_plans_float32_with_worker_runtime():
    facts = facts_of("qwen2.5-0.5b-instruct")
    plan = plan_spawn(facts, "train", 1, max_batch_size=256, device_kind="cpu")
    assert plan.inputs.weight_dtype == "float32"
    assert plan.components["weights"] == facts.parameters * 4
    assert "master_weights" not in plan.components
    assert plan.components["overhead"] == 512 * 1024**2


def test_nccl_overhead_only_with_tp():
    facts = facts_of("qwen3-8b")
    single = plan_spawn(facts, "inference", 1, kv_cache_len=10)
    double = plan_spawn(facts, "inference", 2, kv_cache_len=10)
    assert double.components["overhead"] - single.components["overhead"] == 256 * 1024**2
    virtual = plan_spawn(facts, "inference", 2, kv_cache_len=10, device_kind="virtual")
    assert virtual.components["overhead"] == double.components["overhead"]


def test_plan_notes_and_json():
    plan = plan_spawn(facts_of("qwen3-0.6b"), "train", 2, max_batch_size=512, adapter=True)
    output = json.loads(json.dumps(plan.to_dict()))
    assert set(output["notes"]) == set(output["components"])
    for note in output["notes"].values():
        assert note["formula"] and note["source"]
        assert note["calibration"] in ("exact", "estimate")
    assert output["notes"]["activations"]["calibration"] == "estimate"
    assert output["notes"]["weights"]["calibration"] == "exact"
    assert len(output["ranks"]) == 2
    assert output["total"] == max(rank["total"] for rank in output["ranks"])


def test_invalid_plan_inputs_listed():
    facts = facts_of("qwen3-0.6b")
    with pytest.raises(InvalidRequest) as raised:
        plan_spawn(facts, "train", 0, max_batch_size=None, device_kind="tpu")  # type: ignore[arg-type]
    message = raised.value.message
    assert "tp=0 is invalid" in message
    assert "max_batch_size=None is invalid" in message
    assert "device_kind='tpu' is invalid" in message
    with pytest.raises(InvalidRequest, match="kv_cache_len=0 is invalid"):
        plan_spawn(facts, "inference", 1, kv_cache_len=0)
    with pytest.raises(InvalidRequest, match="kind='serve' is invalid"):
        plan_spawn(facts, "serve", 1, kv_cache_len=10)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Admission


def test_full_training_8b_refused_on_80_gib():
    plan = plan_spawn(facts_of("llama-3.1-8b-instruct"), "train", 1, max_batch_size=4096)
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, gpus(80))
    message = raised.value.message
    for name, size in plan.components.items():
        assert f"{name}" in message
        assert format_gib(size) in message
    assert f"total {format_gib(plan.total)} against 80.00 GiB free on cuda:0" in message
    assert "adapter training (.with_adapter()) fits at max_batch_size=4096" in message
    assert "an inference spawn fits with kv_cache_len=131072" in message
    assert "no max_batch_size" in message

    data = json.loads(json.dumps(data_of(raised)))
    assert data["reason"] == "does_not_fit"
    assert data["plan"]["components"] == plan.components
    assert data["ranks"][0]["fits"] is False
    assert data["advice"]["adapter"]["fits"] is True
    assert data["advice"]["max_batch_size"] is None


def test_adapter_training_8b_admitted_on_80_gib():
    plan = plan_spawn(facts_of("llama-3.1-8b-instruct"), "train", 1, max_batch_size=4096, adapter=True)
    placement = admit(plan, gpus(80))
    assert placement.devices == ["cuda:0"]
    assert placement.ranks[0].planned_bytes == plan.total
    assert placement.bytes_by_device() == {"cuda:0": plan.total}


def test_largest_kv_cache_len_advised():
    facts = facts_of("llama-3.1-8b-instruct")
    plan = plan_spawn(facts, "inference", 1, kv_cache_len=131072)
    devices = gpus(24)
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, devices)
    largest = data_of(raised)["advice"]["max_kv_cache_len"]
    assert largest is not None and largest < 131072
    assert f"kv_cache_len={largest} (largest that fits" in raised.value.message
    admit(plan.replan(kv_cache_len=largest), devices)
    with pytest.raises(SpawnRefused):
        admit(plan.replan(kv_cache_len=largest + 1), devices)


def test_largest_max_batch_size_advised():
    facts = facts_of("qwen2.5-0.5b-instruct")
    plan = plan_spawn(facts, "train", 1, max_batch_size=65536)
    devices = gpus(24)
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, devices)
    largest = data_of(raised)["advice"]["max_batch_size"]
    assert largest is not None and 0 < largest < 65536
    admit(plan.replan(max_batch_size=largest), devices)
    with pytest.raises(SpawnRefused):
        admit(plan.replan(max_batch_size=largest + 1), devices)


def test_higher_tp_advised():
    plan = plan_spawn(facts_of("qwen3-32b"), "inference", 1, kv_cache_len=32768)
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, gpus(40, 40, 40, 40, total_gib=40))
    advice = data_of(raised)["advice"]["tp"]
    assert advice["fits"] is True
    assert advice["tp"] == 2
    assert "tp=2 fits on the devices with the most free memory" in raised.value.message


def test_every_failing_rank_named():
    plan = plan_spawn(facts_of("qwen3-8b"), "inference", 2, kv_cache_len=131072)
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, gpus(6, 7))
    assert "Rank 0 needs" in raised.value.message
    assert "Rank 1 needs" in raised.value.message


def test_placement_prefers_most_free():
    plan = plan_spawn(facts_of("qwen3-0.6b"), "inference", 2, kv_cache_len=1024)
    placement = admit(plan, gpus(10, 70, 30, 50))
    assert placement.devices == ["cuda:1", "cuda:3"]


def test_pending_bytes_subtracted():
    plan = plan_spawn(facts_of("qwen3-0.6b"), "inference", 1, kv_cache_len=1024)
    placement = admit(plan, gpus(60, 50), pending={"cuda:0": 20 * GIB})
    assert placement.devices == ["cuda:1"]
    assert placement.ranks[0].available_bytes == 50 * GIB
    with pytest.raises(SpawnRefused):
        admit(plan, gpus(1), pending={"cuda:0": 0})


def test_pinned_devices_kept_in_rank_order():
    plan = plan_spawn(facts_of("qwen3-0.6b"), "inference", 2, kv_cache_len=1024)
    placement = admit(plan, gpus(10, 70, 30, 50), pinned=["cuda:2", "cuda:0"])
    assert placement.devices == ["cuda:2", "cuda:0"]


def test_pinned_device_errors():
    plan = plan_spawn(facts_of("qwen3-0.6b"), "inference", 2, kv_cache_len=1024)
    devices = gpus(10, 70)
    with pytest.raises(InvalidRequest, match="pinned device 'cuda:9' not found; devices: cuda:0, cuda:1"):
        admit(plan, devices, pinned=["cuda:0", "cuda:9"])
    with pytest.raises(InvalidRequest, match="repeat a device"):
        admit(plan, devices, pinned=["cuda:0", "cuda:0"])
    with pytest.raises(InvalidRequest, match="pin exactly one device per rank"):
        admit(plan, devices, pinned=["cuda:0"])


def test_pinned_device_too_small_refused():
    plan = plan_spawn(facts_of("qwen3-8b"), "inference", 1, kv_cache_len=8192)
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, gpus(80, 4), pinned=["cuda:1"])
    assert "cuda:1 has 4.00 GiB free" in raised.value.message


# ---------------------------------------------------------------------------------------
# Command line and imports


def test_cli_prints_facts(capsys):
    assert planner_main(["facts", "qwen3-32b"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] == 32_762_123_264


def test_cli_plan_refused_on_virtual_device(capsys):
    status = planner_main(
        [
            "plan",
            "llama-3.1-8b-instruct",
            "--kind",
            "train",
            "--max-batch-size",
            "4096",
            "--devices",
            "1x80GiB",
        ]
    )
    assert status == 1
    assert "Spawn does not fit" in capsys.readouterr().err


def test_cli_unknown_architecture(capsys):
    assert planner_main(["facts", "no-such-model"]) == 2
    assert "architecture 'no-such-model' not found in resources; known:" in capsys.readouterr().err


def test_planner_loads_no_torch():
    code = (
        "import sys, galley.planner, galley.planner.__main__, galley.engine.devices; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ENGINE_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
