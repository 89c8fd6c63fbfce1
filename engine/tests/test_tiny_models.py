import json
from pathlib import Path

import pytest
from safetensors import safe_open
from transformers import AutoTokenizer

from galley.models.tiny import make_tiny


def test_tiny_folder_is_complete_hf_model(tiny_model_dir: Path):
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny_model_dir / name).is_file(), name
    config = json.loads((tiny_model_dir / "config.json").read_text())
    with safe_open(tiny_model_dir / "model.safetensors", "pt") as weights:
        embed = weights.get_slice("model.embed_tokens.weight").get_shape()
    assert embed == [config["vocab_size"], config["hidden_size"]]


def test_chat_template_renders_generation_prompt_only_on_request(tiny_model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    user = [{"role": "user", "content": "Hi"}]
    without = tokenizer.apply_chat_template(user, tokenize=False)
    with_prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert with_prompt.startswith(without)
    assert "assistant" in with_prompt[len(without):]


def test_unknown_family_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown model family 'gpt2'"):
        make_tiny("gpt2", tmp_path)
