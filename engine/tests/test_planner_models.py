"""Planner against real transformers and peft models: tensor shapes, weight bytes, LoRA sizes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from galley.planner import architecture_facts, plan_spawn  # noqa: E402
from galley.planner.plan import lora_parameters  # noqa: E402
from galley.planner.safetensors_headers import SafetensorsHeaderError, read_folder_tensors  # noqa: E402

torch.set_num_threads(1)

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, vocab_size=256)

# One small config per supported family, covering tied embeddings and the bias variants.
FAMILY_CONFIGS = {
    "llama": ("LlamaConfig", dict(num_key_value_heads=2)),
    "llama-biases": ("LlamaConfig", dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True)),
    "llama-head-dim": ("LlamaConfig", dict(num_key_value_heads=2, head_dim=32)),
    "mistral": ("MistralConfig", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen2": ("Qwen2Config", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", dict(num_key_value_heads=2, head_dim=16)),
    "qwen3-bias": ("Qwen3Config", dict(num_key_value_heads=1, head_dim=24, attention_bias=True)),
}


def build(variant: str):
    class_name, extra = FAMILY_CONFIGS[variant]
    config = getattr(transformers, class_name)(**SMALL, **extra)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return config, model


def parameter_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize("variant", sorted(FAMILY_CONFIGS))
def test_config_shapes_match_transformers(variant):
    config, model = build(variant)
    facts = architecture_facts(config.to_dict())
    planned = {tensor.name: tensor.shape for tensor in facts.tensors}
    actual = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert planned == actual
    assert facts.parameters == model.num_parameters()


@pytest.mark.parametrize("variant", ["llama", "qwen2", "qwen3"])
def test_header_shapes_match_transformers(variant, tmp_path):
    config, model = build(variant)
    model.save_pretrained(tmp_path)
    facts = architecture_facts(json.loads((tmp_path / "config.json").read_text()), tmp_path)
    assert facts.weights_source == "safetensors"
    assert facts.parameters == model.num_parameters()
    assert facts.stored_weight_bytes == parameter_bytes(model)


def test_sharded_checkpoint_read(tmp_path):
    config, model = build("llama")
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    facts = architecture_facts(json.loads((tmp_path / "config.json").read_text()), tmp_path)
    assert facts.parameters == model.num_parameters()


def test_truncated_safetensors_rejected(tmp_path):
    config, model = build("llama")
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(SafetensorsHeaderError, match="truncated"):
        read_folder_tensors(tmp_path)


def test_adapter_and_head_files_ignored(tmp_path):
    config, model = build("qwen3")
    model.save_pretrained(tmp_path)
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(1, 64), "bias": torch.zeros(1)}, tmp_path / "value_head.safetensors")
    facts = architecture_facts(json.loads((tmp_path / "config.json").read_text()), tmp_path)
    assert facts.parameters == model.num_parameters()


def test_tiny_model_weight_bytes_exact(tiny_model_dir: Path):
    """Planned CPU weight bytes equal the bytes of the parameters the engine would load."""
    config = json.loads((tiny_model_dir / "config.json").read_text())
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loaded = parameter_bytes(model)
    for facts in (architecture_facts(config, tiny_model_dir), architecture_facts(config)):
        plan = plan_spawn(facts, "inference", 1, kv_cache_len=16, device_kind="cpu")
        assert plan.components["weights"] == loaded
        assert facts.parameters == model.num_parameters()


def test_bf16_weight_bytes_equal_file_bytes(tmp_path):
    config, model = build("qwen2")
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    facts = architecture_facts(json.loads((tmp_path / "config.json").read_text()), tmp_path)
    assert facts.dtype == "bfloat16"
    plan = plan_spawn(facts, "inference", 1, kv_cache_len=16, device_kind="cuda")
    assert plan.components["weights"] == facts.stored_weight_bytes == parameter_bytes(model)


@pytest.mark.parametrize("variant", ["llama", "qwen2", "qwen3-bias"])
def test_lora_parameters_match_peft(variant):
    from peft import LoraConfig, get_peft_model

    config, model = build(variant)
    facts = architecture_facts(config.to_dict())
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert lora_parameters(facts, 16) == trainable


def test_kv_cache_bytes_match_dynamic_cache():
    config, model = build("qwen3")
    facts = architecture_facts(config.to_dict())
    tokens = 12
    with torch.no_grad():
        output = model(input_ids=torch.randint(256, (1, tokens)), use_cache=True)
    cache = output.past_key_values
    measured = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    plan = plan_spawn(facts, "inference", 1, kv_cache_len=tokens, device_kind="cpu")
    assert plan.components["kv_cache"] == measured
    assert math.prod(cache.layers[0].keys.shape) == tokens * facts.kv_heads * facts.head_dim
