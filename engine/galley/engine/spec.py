"""The load request the engine sends a worker, and how spawn parameters are resolved.

Torch-free: the server builds a ``LoadSpec`` from the request and the registry record; the
worker reads it as the first message on its connection.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from galley.engine.errors import InvalidRequest, ModelError
from galley.protocol import (
    DEFAULT_KV_CACHE_LEN,
    DEFAULT_TOKENS_TO_GENERATE,
    DEFAULT_TP,
    MODEL_REGISTRY_SCHEME,
    ModelRecord,
    ModelSpec,
)

# LoRA defaults of ``.with_adapter()`` on a full-weight model: rank 16, scale alpha/r = 2,
# on every linear layer of the decoder (peft's "all-linear" leaves out the LM head).
LORA_RANK = 16
LORA_ALPHA = 32
LORA_DROPOUT = 0.05
LORA_TARGET_MODULES = "all-linear"


class LoadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spawn_id: str
    name: str
    kind: Literal["inference", "train"]
    model_key: str
    model_path: str
    # For an adapter: the folder of its base model.
    base_path: str | None = None
    base_key: str | None = None
    # Add a fresh LoRA adapter (a full-weight model spawned for training with .with_adapter()).
    new_adapter: bool = False
    scoring: bool = False
    device: str = "cpu"  # "cpu" or "cuda:N"
    rank: int = 0
    world_size: int = 1
    kv_cache_len: int
    tokens_to_generate: int
    max_batch_size: int | None = None
    # Training spawns only: the planned activation bytes of this rank. Their generation KV
    # cache gets at most this much, because the plan has no KV cache component for them.
    generation_kv_bytes: int | None = None


class ResolvedSpawn(BaseModel):
    """A spawn request with every default applied and the adapter rule checked."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["inference", "train"]
    model_key: str
    tp: int
    kv_cache_len: int
    tokens_to_generate: int
    max_batch_size: int | None
    adapter: bool  # the spawn runs an adapter (saved or new)
    new_adapter: bool
    scoring: bool

    def reuse_key(self) -> tuple:
        """Spawns with equal keys are interchangeable for keep-warm reuse."""
        return (
            self.kind,
            self.model_key,
            self.tp,
            self.kv_cache_len,
            self.tokens_to_generate,
            self.adapter,
            self.new_adapter,
            self.scoring,
        )


def model_key_of(path: str) -> str:
    if not path.startswith(MODEL_REGISTRY_SCHEME) or len(path) == len(MODEL_REGISTRY_SCHEME):
        raise InvalidRequest(
            f"model path {path!r} is invalid; write model_registry://<key>, e.g. model_registry://qwen3-32b"
        )
    return path[len(MODEL_REGISTRY_SCHEME) :]


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise InvalidRequest(f"{name}={value} is invalid; it must be at least 1")
    return value


def resolve_spawn(
    kind: Literal["inference", "train"], model: ModelSpec, record: ModelRecord, max_batch_size: int | None
) -> ResolvedSpawn:
    """Apply defaults (the call's value, then the record's, then protocol.DEFAULT_*) and check the request."""
    defaults = record.defaults
    kv_cache_len = (
        _positive("kv_cache_len", model.kv_cache_len) or defaults.kv_cache_len or DEFAULT_KV_CACHE_LEN
    )
    tokens_to_generate = (
        _positive("tokens_to_generate", model.tokens_to_generate)
        or defaults.tokens_to_generate
        or DEFAULT_TOKENS_TO_GENERATE
    )
    tp = _positive("tp", model.tp) or defaults.tp or DEFAULT_TP

    if kind == "train":
        if max_batch_size is None:
            raise InvalidRequest(
                "spawn_train needs max_batch_size (tokens per training micro-batch), e.g. 4096"
            )
        _positive("max_batch_size", max_batch_size)
    elif max_batch_size is not None:
        raise InvalidRequest("max_batch_size applies to spawn_train only; leave it unset for spawn_inference")

    is_adapter = record.kind == "adapter"
    if is_adapter and model.use_adapter is False:
        raise InvalidRequest(
            f"model {record.key!r} is itself an adapter, so it always trains its adapter; "
            f"remove .with_adapter(False)"
        )
    new_adapter = kind == "train" and not is_adapter and bool(model.use_adapter)
    if is_adapter and not record.base_key:
        raise ModelError(
            f"adapter model {record.key!r} has no base model in the registry (base_key is empty); "
            f"register it with its base model's key"
        )

    return ResolvedSpawn(
        kind=kind,
        model_key=record.key,
        tp=tp,
        kv_cache_len=kv_cache_len,
        tokens_to_generate=tokens_to_generate,
        max_batch_size=max_batch_size,
        adapter=is_adapter or new_adapter,
        new_adapter=new_adapter,
        scoring=model.scoring or record.kind == "scoring",
    )
