"""Saving a tensor-parallel training spawn as one ordinary, unsharded model folder.

Every rank gathers the full tensors, one parameter at a time, and rank 0 writes the same
folder layout as ``Trainer.save`` (see ``galley.engine.training.checkpoint``), so the saved
model loads with any tp, including tp=1.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from galley.engine.tp.optimizer import TensorParallelAdamW
from galley.engine.training.checkpoint import VALUE_HEAD_FILE, prepare_folder, save_value_head, write_metadata
from galley.engine.training.forward import is_peft_model
from galley.engine.training.optimizer import OPTIMIZER_FILE

log = logging.getLogger("galley.engine.training")


def gather_state_dict(
    module: torch.nn.Module, optimizer: TensorParallelAdamW, adapter_only: bool
) -> dict[str, Tensor]:
    """Return the unsharded state dict on CPU on rank 0, and an empty dict on the other ranks.

    Every rank must call this, in the same order. With ``adapter_only`` only the LoRA
    tensors are gathered, which is all peft saves.
    """
    sharded = optimizer.sharded
    full: dict[str, Tensor] = {}
    for name, tensor in module.state_dict().items():
        if adapter_only and ".lora_" not in name:
            continue
        # NOTE: each rank keeps one full tensor at a time on its device, e.g. the whole embedding.
        gathered = sharded.layout_named(name).gather(tensor.detach(), sharded.rank)
        if sharded.rank == 0:
            full[name] = gathered.cpu()
    return full


def save_unsharded(trainer: Any, folder: str | Path, model_name: str, inference_only: bool) -> dict[str, Any]:
    """Write ``trainer``'s model as one unsharded folder from rank 0; return its galley.json contents.

    The counterpart of ``Trainer.save`` for a trainer whose optimizer is a
    ``TensorParallelAdamW``. Ranks other than 0 take part in the gathers and write nothing.
    """
    optimizer: TensorParallelAdamW = trainer.optimizer
    parts = trainer.parts
    adapter = is_peft_model(parts.module)
    state = gather_state_dict(parts.module, optimizer, adapter_only=adapter)
    optimizer_state = None if inference_only else optimizer.state_dict()
    metadata = {
        "kind": "adapter" if adapter else "full",
        "scoring": parts.scalar_head is not None,
        "base_key": trainer.model.base_key if adapter else None,
        "optim_step": trainer.get_optim_step()["step"],
        "optimizer": None if inference_only else OPTIMIZER_FILE,
    }
    if optimizer.rank != 0:
        return metadata

    folder = Path(folder)
    prepare_folder(folder)
    parts.module.save_pretrained(str(folder), state_dict=state)
    if trainer.model.tokenizer is not None:
        trainer.model.tokenizer.save_pretrained(str(folder))
    if parts.scalar_head is not None:
        save_value_head(parts.scalar_head, folder / VALUE_HEAD_FILE)
    if optimizer_state is not None:
        torch.save(optimizer_state, folder / OPTIMIZER_FILE)
    write_metadata(folder, metadata)
    log.info(
        "saved %s model %r to %s at optim step %d, gathered from %d ranks",
        metadata["kind"],
        model_name,
        folder,
        metadata["optim_step"],
        optimizer.sharded.tp,
    )
    return metadata
