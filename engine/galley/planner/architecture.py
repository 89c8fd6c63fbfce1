"""Architecture facts of a decoder-only model, from its config.json and safetensors headers.

Parameter counts are exact: every weight tensor is listed with its shape, either read from
the folder's safetensors headers or, without weights on disk, built from the config the way
transformers 5 builds Llama, Mistral, Qwen2/2.5 and Qwen3 models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .safetensors_headers import StoredTensor, read_folder_tensors
from .sharding import elements_on_rank, kv_heads_on_rank
from .units import normalize_dtype


class ArchitectureError(ValueError):
    """A config.json that the planner cannot describe; the message names each problem."""


@dataclass(frozen=True)
class FamilyLayout:
    architecture: str
    # Class default of num_key_value_heads when config.json omits the key (transformers 5.23).
    default_kv_heads: int | None  # None: the number of attention heads
    qk_norm: bool = False  # RMSNorm over head_dim on queries and keys (Qwen3)


FAMILIES: dict[str, FamilyLayout] = {
    "llama": FamilyLayout("LlamaForCausalLM", default_kv_heads=None),
    "mistral": FamilyLayout("MistralForCausalLM", default_kv_heads=8),
    "qwen2": FamilyLayout("Qwen2ForCausalLM", default_kv_heads=32),
    "qwen3": FamilyLayout("Qwen3ForCausalLM", default_kv_heads=32, qk_norm=True),
}

REQUIRED_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    role: str  # a sharding role, see sharding.ROLES

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ArchitectureFacts:
    name: str
    family: str
    architecture: str
    parameters: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    dtype: str  # torch dtype name of config.json ("torch_dtype" or "dtype")
    tie_word_embeddings: bool
    max_position_embeddings: int | None
    weights_source: str  # "safetensors" (headers read) or "config" (shapes built from config.json)
    stored_weight_bytes: int | None  # bytes of the weight tensors in their files, when read
    tensors: tuple[TensorSpec, ...] = field(repr=False)
    _elements_cache: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def valid_tp(self) -> list[int]:
        """Return the tensor-parallel sizes that split the attention heads evenly."""
        return [tp for tp in range(1, self.heads + 1) if self.heads % tp == 0]

    def weight_elements_per_rank(self, tp: int) -> tuple[int, ...]:
        """Count the weight elements on each rank at tensor parallelism ``tp`` (cached)."""
        cached = self._elements_cache.get(tp)
        if cached is None:
            cached = tuple(
                sum(
                    elements_on_rank(
                        t.role, t.shape, heads=self.heads, kv_heads=self.kv_heads, tp=tp, rank=rank
                    )
                    for t in self.tensors
                )
                for rank in range(tp)
            )
            self._elements_cache[tp] = cached
        return cached

    def kv_heads_on_rank(self, tp: int, rank: int) -> int:
        return kv_heads_on_rank(self.heads, self.kv_heads, tp, rank)

    def kv_bytes_per_token(self, dtype_size: int, tp: int = 1, rank: int = 0) -> int:
        """Bytes of K and V cache per token on one rank: 2 * layers * kv_heads_per_rank * head_dim * dtype size."""
        return 2 * self.layers * self.kv_heads_on_rank(tp, rank) * self.head_dim * dtype_size

    def to_dict(self) -> dict[str, Any]:
        """Return the facts as JSON (the registry's ``facts`` object, plus planner extras)."""
        return {
            "name": self.name,
            "family": self.family,
            "architecture": self.architecture,
            "parameters": self.parameters,
            "layers": self.layers,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "hidden": self.hidden,
            "intermediate": self.intermediate,
            "vocab": self.vocab,
            "dtype": self.dtype,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "weights_source": self.weights_source,
            "stored_weight_bytes": self.stored_weight_bytes,
        }


def architecture_facts(
    config: Mapping[str, Any], folder: str | Path | None = None, *, name: str | None = None
) -> ArchitectureFacts:
    """Describe a model from its config.json dict, and its folder's safetensors headers if any.

    With weights in ``folder``, tensor shapes (hence parameter count and weight bytes) come
    from the headers. Without them the shapes are built from the config, which needs a
    supported family (``model_type`` llama, mistral, qwen2 or qwen3). ``name`` is the display name used
    in messages; it defaults to the folder name, then ``_name_or_path``, then the architecture.

    Raises ArchitectureError naming every missing or invalid key, and SafetensorsHeaderError
    for unreadable weight files.
    """
    family = str(config.get("model_type", "")).lower()
    layout = FAMILIES.get(family)
    dims = _read_dimensions(config, family, layout)

    stored = read_folder_tensors(Path(folder)) if folder is not None else None
    if stored is not None:
        tensors = _tensors_from_headers(stored, dims["tie_word_embeddings"])
        stored_bytes = sum(tensor.nbytes for tensor in stored.values())
        source = "safetensors"
    elif layout is not None:
        tensors = _tensors_from_config(dims, family, config)
        stored_bytes = None
        source = "config"
    else:
        where = f" and {folder} has no safetensors weights" if folder is not None else ""
        raise ArchitectureError(
            f"model_type {config.get('model_type')!r} is not supported without weights on disk{where}; "
            f"the planner builds tensor shapes for {', '.join(FAMILIES)}"
        )

    architectures = config.get("architectures") or [layout.architecture if layout else family]
    return ArchitectureFacts(
        name=name or _default_name(config, folder, architectures[0]),
        family=family,
        architecture=str(architectures[0]),
        parameters=sum(t.numel for t in tensors),
        tensors=tuple(tensors),
        weights_source=source,
        stored_weight_bytes=stored_bytes,
        **dims,
    )


def _default_name(config: Mapping[str, Any], folder: str | Path | None, architecture: str) -> str:
    if folder is not None:
        return Path(folder).resolve().name
    name_or_path = config.get("_name_or_path")
    if isinstance(name_or_path, str) and name_or_path.strip():
        return Path(name_or_path.rstrip("/")).name
    return architecture


def _read_dimensions(config: Mapping[str, Any], family: str, layout: FamilyLayout | None) -> dict[str, Any]:
    problems: list[str] = []
    values: dict[str, int] = {}
    for key in REQUIRED_KEYS:
        value = config.get(key)
        if value is None:
            problems.append(f"{key} is missing")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{key}={value!r} is not a positive integer")
        else:
            values[key] = value
    if problems:
        raise ArchitectureError("config.json cannot be planned: " + "; ".join(problems))

    heads = values["num_attention_heads"]
    kv_heads = _kv_heads(config, heads, layout)
    head_dim = _head_dim(config, family, values["hidden_size"], heads)
    if not isinstance(kv_heads, int) or kv_heads < 1 or heads % kv_heads != 0:
        problems.append(
            f"num_key_value_heads={kv_heads!r} must be a positive divisor of num_attention_heads={heads}"
        )
    if not isinstance(head_dim, int) or head_dim < 1:
        problems.append(f"head_dim={head_dim!r} is not a positive integer")
    dtype_value = config.get("torch_dtype") or config.get("dtype") or "float32"
    try:
        dtype = normalize_dtype(dtype_value)
    except ValueError as error:
        problems.append(f"torch_dtype: {error}")
        dtype = "float32"
    if problems:
        raise ArchitectureError("config.json cannot be planned: " + "; ".join(problems))

    max_positions = config.get("max_position_embeddings")
    return {
        "layers": values["num_hidden_layers"],
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "hidden": values["hidden_size"],
        "intermediate": values["intermediate_size"],
        "vocab": values["vocab_size"],
        "dtype": dtype,
        # The four families default to untied; PretrainedConfig's own default is tied.
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", layout is None)),
        "max_position_embeddings": max_positions if isinstance(max_positions, int) else None,
    }


def _kv_heads(config: Mapping[str, Any], heads: int, layout: FamilyLayout | None) -> Any:
    if "num_key_value_heads" not in config:
        if layout is not None and layout.default_kv_heads is not None:
            return layout.default_kv_heads
        return heads
    value = config["num_key_value_heads"]
    return heads if value is None else value


def _head_dim(config: Mapping[str, Any], family: str, hidden: int, heads: int) -> Any:
    value = config.get("head_dim")
    if value is not None:
        return value
    if family == "qwen3" and "head_dim" not in config:
        return 128  # Qwen3Config's class default, not hidden_size // heads
    return hidden // heads


def _tensors_from_config(dims: dict[str, Any], family: str, config: Mapping[str, Any]) -> list[TensorSpec]:
    """List every parameter of the model as transformers 5.23 builds it for ``family``."""
    hidden, inter, vocab = dims["hidden"], dims["intermediate"], dims["vocab"]
    q_dim = dims["heads"] * dims["head_dim"]
    kv_dim = dims["kv_heads"] * dims["head_dim"]
    attention_bias = bool(config.get("attention_bias", False))
    qkv_bias = True if family == "qwen2" else (attention_bias and family != "mistral")
    o_bias = attention_bias and family in ("llama", "qwen3")
    mlp_bias = bool(config.get("mlp_bias", False)) and family == "llama"

    tensors = [TensorSpec("model.embed_tokens.weight", (vocab, hidden), "embedding")]
    for i in range(dims["layers"]):
        prefix = f"model.layers.{i}."
        projections = [
            ("self_attn.q_proj", (q_dim, hidden), "q", qkv_bias),
            ("self_attn.k_proj", (kv_dim, hidden), "k", qkv_bias),
            ("self_attn.v_proj", (kv_dim, hidden), "v", qkv_bias),
            ("self_attn.o_proj", (hidden, q_dim), "o", o_bias),
            ("mlp.gate_proj", (inter, hidden), "gate", mlp_bias),
            ("mlp.up_proj", (inter, hidden), "up", mlp_bias),
            ("mlp.down_proj", (hidden, inter), "down", mlp_bias),
        ]
        for module, shape, role, has_bias in projections:
            tensors.append(TensorSpec(f"{prefix}{module}.weight", shape, role))
            if has_bias:
                # A row-parallel layer's bias is added after the all-reduce, on every rank.
                bias_role = "replicated" if role in ("o", "down") else role
                tensors.append(TensorSpec(f"{prefix}{module}.bias", (shape[0],), bias_role))
        if FAMILIES[family].qk_norm:
            tensors.append(TensorSpec(f"{prefix}self_attn.q_norm.weight", (dims["head_dim"],), "replicated"))
            tensors.append(TensorSpec(f"{prefix}self_attn.k_norm.weight", (dims["head_dim"],), "replicated"))
        tensors.append(TensorSpec(f"{prefix}input_layernorm.weight", (hidden,), "replicated"))
        tensors.append(TensorSpec(f"{prefix}post_attention_layernorm.weight", (hidden,), "replicated"))
    tensors.append(TensorSpec("model.norm.weight", (hidden,), "replicated"))
    if not dims["tie_word_embeddings"]:
        tensors.append(TensorSpec("lm_head.weight", (vocab, hidden), "lm_head"))
    return tensors


_PROJECTION = re.compile(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.(weight|bias)$")
_PROJECTION_ROLES = {
    "q_proj": "q",
    "k_proj": "k",
    "v_proj": "v",
    "o_proj": "o",
    "gate_proj": "gate",
    "up_proj": "up",
    "down_proj": "down",
}


def _tensors_from_headers(stored: Mapping[str, StoredTensor], tied: bool) -> list[TensorSpec]:
    tensors = []
    for name, tensor in stored.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer that older checkpoints saved; transformers recomputes it
        if tied and (name == "lm_head.weight" or name.endswith(".lm_head.weight")):
            continue  # tied to the embedding at load time, so it is not a separate parameter
        tensors.append(TensorSpec(name, tensor.shape, _role_of(name)))
    return tensors


def _role_of(name: str) -> str:
    if name.endswith("embed_tokens.weight"):
        return "embedding"
    if name == "lm_head.weight" or name.endswith(".lm_head.weight"):
        return "lm_head"
    match = _PROJECTION.search(name)
    if match is None:
        return "replicated"
    role = _PROJECTION_ROLES[match.group(1)]
    if match.group(2) == "bias" and role in ("o", "down"):
        return "replicated"
    return role
