"""Saving a training spawn as a model folder that the engine can load back.

Folder layout:

- full model: ``config.json``, ``generation_config.json``, ``model*.safetensors`` (transformers
  ``save_pretrained``), tokenizer files;
- adapter: ``adapter_config.json``, ``adapter_model.safetensors`` (peft ``save_pretrained``),
  tokenizer files. The base weights stay in the base model's folder;
- scoring model, either kind: ``value_head.safetensors`` with tensors ``weight`` (1, hidden)
  and ``bias`` (1,);
- always ``galley.json``: ``{"kind": "full"|"adapter", "scoring": bool, "base_key": str|None,
  "optim_step": int, "optimizer": "optimizer.pt"|None}``;
- ``optimizer.pt`` when saved for further training (see ``optimizer.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from galley.engine.training.forward import ModelParts, is_peft_model

GALLEY_METADATA_FILE = "galley.json"
VALUE_HEAD_FILE = "value_head.safetensors"


def prepare_folder(folder: Path) -> None:
    """Create ``folder``; raise if it exists and is not empty, so no two models mix files."""
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"cannot save into {folder}: the folder is not empty; choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)


def save_weights(parts: ModelParts, tokenizer: Any, folder: Path) -> str:
    """Write the model (or its adapter), its tokenizer and its value head; return the kind."""
    # peft's save_pretrained writes only the adapter; transformers' writes the full weights.
    kind = "adapter" if is_peft_model(parts.module) else "full"
    module: Any = parts.module
    module.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    if parts.scalar_head is not None:
        save_value_head(parts.scalar_head, folder / VALUE_HEAD_FILE)
    return kind


def save_value_head(head: nn.Linear, path: Path) -> None:
    weight = head.weight.detach().to("cpu", torch.float32).reshape(1, -1).contiguous()
    if head.bias is not None:
        bias = head.bias.detach().to("cpu", torch.float32).reshape(1).contiguous()
    else:
        bias = torch.zeros(1, dtype=torch.float32)
    save_file({"weight": weight, "bias": bias}, str(path))


def write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    (folder / GALLEY_METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")


def read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / GALLEY_METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {folder} was not saved by a Galley training spawn")
    return json.loads(path.read_text())
