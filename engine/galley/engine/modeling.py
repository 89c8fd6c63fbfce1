"""Load a spawn's model in a worker: full weights, a saved adapter, a new LoRA, a value head.

- A full model folder loads with ``AutoModelForCausalLM`` and ``AutoTokenizer``.
- An adapter folder (peft) loads onto its base model's folder (``LoadSpec.base_path``).
- ``new_adapter`` wraps a full model in a fresh LoRA for training (see ``spec.LORA_*``); only
  the adapter's parameters then require gradients.
- ``scoring`` adds a value head ``Linear(hidden, 1)`` on the last hidden state, loaded from
  ``value_head.safetensors`` when the folder has one. A folder saved as a scoring model gets
  its head back even without ``.into_scoring_model()``.

Weights load in config.json's dtype on CUDA and in float32 on CPU (CPU kernels for bf16 are
slow and some are missing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from galley.engine.errors import InvalidRequest, ModelError
from galley.engine.spec import LORA_ALPHA, LORA_DROPOUT, LORA_RANK, LORA_TARGET_MODULES, LoadSpec
from galley.models.folders import VALUE_HEAD_FILE, FolderInfo, InvalidModelFolder, inspect_folder

log = logging.getLogger("galley.engine.worker")

# Seed of a new value head's initial weights, so two spawns of one scoring model agree.
VALUE_HEAD_SEED = 0
# Seed of a new LoRA adapter's initial weights, for the same reason.
LORA_SEED = 0


@dataclass
class LoadedModel:
    module: nn.Module  # a transformers causal LM, possibly wrapped in a peft model
    tokenizer: Any
    value_head: nn.Linear | None
    device: torch.device
    adapter: bool  # module is a peft model whose adapter is the trained part
    eos_ids: list[int]
    pad_id: int | None
    generation_defaults: dict[str, Any]  # do_sample, temperature, top_p from generation_config.json
    vocab_size: int
    max_positions: int | None
    # tp > 1: this rank's shard layouts (``galley.engine.tp.ShardedModel``); None for tp=1.
    shards: Any = None


def torch_dtype_for(config: dict[str, Any], device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    name = config.get("torch_dtype") or config.get("dtype") or "float32"
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelError(f"config.json names dtype {name!r}, which torch does not know")
    return dtype


def _inspect(path: str) -> FolderInfo:
    try:
        return inspect_folder(path)
    except InvalidModelFolder as error:
        raise ModelError(str(error)) from None


def _load_causal_lm(
    folder: Path, config: dict[str, Any], device: torch.device, tensor_parallel: bool
) -> nn.Module:
    from transformers import AutoModelForCausalLM

    # With tensor parallelism the whole model stays on the CPU until load_model keeps this rank's shard.
    try:
        module = AutoModelForCausalLM.from_pretrained(
            str(folder),
            dtype=torch_dtype_for(config, device),
            attn_implementation="sdpa",
            local_files_only=True,
        )
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"cannot load the model in {folder}: {error}") from None
    if tensor_parallel:
        return module
    return nn.Module.to(module, device)


def init_distributed(spec: LoadSpec, device: torch.device) -> None:
    """Join the spawn's process group (gloo on CPU, NCCL on CUDA).

    The engine names a rendezvous file in GALLEY_TP_STORE; without it, torch's env://
    variables (MASTER_ADDR, MASTER_PORT) are used.
    """
    import os

    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store_path = os.environ.get("GALLEY_TP_STORE")
    if store_path:
        store = dist.FileStore(store_path, spec.world_size)  # pyright: ignore[reportPrivateImportUsage]
        dist.init_process_group(backend, store=store, rank=spec.rank, world_size=spec.world_size)
    else:
        dist.init_process_group(backend, rank=spec.rank, world_size=spec.world_size)
    log.info("joined process group: rank %d of %d (%s)", spec.rank, spec.world_size, backend)


def _load_tokenizer(*folders: Path):
    from transformers import AutoTokenizer

    for folder in folders:
        if any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
            try:
                return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError) as error:
                raise ModelError(f"cannot load the tokenizer in {folder}: {error}") from None
    raise ModelError(f"no tokenizer files in {', '.join(str(f) for f in folders)}")


def _generation_settings(folder: Path, tokenizer) -> tuple[list[int], dict[str, Any]]:
    """EOS ids and sampling defaults from generation_config.json, else from the tokenizer."""
    from transformers import GenerationConfig

    eos: Any = None
    defaults: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None}
    if (folder / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(str(folder), local_files_only=True)
        eos = generation.eos_token_id
        defaults = {
            "do_sample": bool(generation.do_sample),
            "temperature": generation.temperature,
            "top_p": generation.top_p,
        }
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    return eos_ids, defaults


def _new_value_head(hidden: int, device: torch.device) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(VALUE_HEAD_SEED)
        head = nn.Linear(hidden, 1, dtype=torch.float32)
    return head.to(device)


def _load_value_head(folder: Path, hidden: int, device: torch.device) -> nn.Linear:
    from safetensors.torch import load_file

    head = _new_value_head(hidden, device)
    path = folder / VALUE_HEAD_FILE
    if path.is_file():
        tensors = load_file(str(path))
        weight = tensors.get("weight")
        if weight is None or weight.numel() != hidden:
            shape = None if weight is None else tuple(weight.shape)
            raise ModelError(f"{path} has weight of shape {shape}; expected (1, {hidden}) for this model")
        bias = tensors.get("bias", torch.zeros(1))
        head.load_state_dict({"weight": weight.reshape(1, hidden).float(), "bias": bias.reshape(1).float()})
    return head


def _add_new_lora(module: nn.Module) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        lora_dropout=LORA_DROPOUT,
        target_modules=LORA_TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    # Seeded, so that every tensor-parallel rank, and a tp=1 spawn, starts from the same LoRA A.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(LORA_SEED)
        return get_peft_model(module, config)


def load_model(spec: LoadSpec) -> LoadedModel:
    """Load what ``spec`` describes onto its device. Raises ModelError for a bad folder."""
    device = torch.device(spec.device)
    if device.type == "cuda" and torch.cuda._is_in_bad_fork():
        # NOTE: not yet seen on a GPU; it would mean a preloaded import initialized CUDA.
        raise ModelError(
            "CUDA was initialized in the fork server before this worker was forked, so the worker cannot use it; "
            "start the engine with --worker-start subprocess"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {spec.device} was assigned but torch sees no CUDA device in this worker")
    info = _inspect(spec.model_path)
    tensor_parallel = spec.world_size > 1
    if tensor_parallel:
        init_distributed(spec, device)

    if info.kind == "adapter":
        if not spec.base_path:
            raise ModelError(
                f"{spec.model_path} is an adapter but the engine found no base model folder for it"
            )
        base = _inspect(spec.base_path)
        module = _load_causal_lm(base.path, base.config, device, tensor_parallel)
        from peft import PeftModel

        try:
            module = PeftModel.from_pretrained(module, str(info.path), is_trainable=spec.kind == "train")
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise ModelError(f"cannot load the adapter in {info.path} onto {base.path}: {error}") from None
        tokenizer = _load_tokenizer(info.path, base.path)
        config, generation_folder = base.config, base.path
    else:
        if spec.new_adapter and spec.kind != "train":
            raise InvalidRequest("a new adapter is trained only in a training spawn")
        module = _load_causal_lm(info.path, info.config, device, tensor_parallel)
        tokenizer = _load_tokenizer(info.path)
        config, generation_folder = info.config, info.path
        if spec.new_adapter:
            module = _add_new_lora(module)

    shards = None
    if tensor_parallel:
        from galley.engine.tp import shard_module

        # NOTE: every rank reads the whole checkpoint into CPU memory before keeping its
        # shard, so loading needs tp times the model's size in host RAM for a moment.
        shards = shard_module(module, spec.rank, spec.world_size)
        module = nn.Module.to(module, device)

    hidden = int(config["hidden_size"])
    value_head = _load_value_head(info.path, hidden, device) if (spec.scoring or info.scoring) else None
    eos_ids, generation_defaults = _generation_settings(generation_folder, tokenizer)

    if spec.kind == "inference":
        module.requires_grad_(False)
        module.eval()
        if value_head is not None:
            value_head.requires_grad_(False)

    return LoadedModel(
        module=module,
        tokenizer=tokenizer,
        value_head=value_head,
        device=device,
        adapter=info.kind == "adapter" or spec.new_adapter,
        eos_ids=eos_ids,
        pad_id=tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else (eos_ids[0] if eos_ids else None),
        generation_defaults=generation_defaults,
        vocab_size=int(config["vocab_size"]),
        max_positions=config.get("max_position_embeddings"),
        shards=shards,
    )
