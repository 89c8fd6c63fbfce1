"""Inspect model folders on disk without importing torch.

A model folder is either a full Hugging Face model (``config.json``, tokenizer files,
``*.safetensors`` weights) or a peft adapter (``adapter_config.json`` and adapter weights,
loaded onto a base model). Folders written by Galley's ``save()`` also carry ``galley.json``:

    {"kind": "full" | "adapter", "scoring": bool, "base_key": str | null,
     "optim_step": int, "optimizer": "optimizer.pt" | null}

A scoring model keeps its value head in ``value_head.safetensors`` (tensors ``weight``
[1, hidden] and ``bias`` [1]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

GALLEY_METADATA = "galley.json"
VALUE_HEAD_FILE = "value_head.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class InvalidModelFolder(ValueError):
    """The folder is not a loadable model; the message names the folder and what is missing."""


@dataclass(frozen=True)
class FolderInfo:
    path: Path
    kind: Literal["full", "adapter"]
    scoring: bool
    # Set for adapters when galley.json names it; else the adapter's recorded base path.
    base_key: str | None = None
    base_model_name_or_path: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # config.json; {} for an adapter without one
    metadata: dict[str, Any] = field(default_factory=dict)  # galley.json, if present

    @property
    def has_value_head(self) -> bool:
        return (self.path / VALUE_HEAD_FILE).is_file()

    @property
    def has_tokenizer(self) -> bool:
        return any((self.path / name).is_file() for name in TOKENIZER_FILES)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InvalidModelFolder(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidModelFolder(f"{path} must hold a JSON object")
    return value


def inspect_folder(path: str | Path) -> FolderInfo:
    """Read a model folder's kind, scoring flag and configs, and check that it can be loaded.

    Raises InvalidModelFolder naming the folder and the missing or broken file.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InvalidModelFolder(f"model folder {folder} does not exist or is not a folder")

    metadata = _read_json(folder / GALLEY_METADATA) if (folder / GALLEY_METADATA).is_file() else {}
    scoring = bool(metadata.get("scoring", False)) or (folder / VALUE_HEAD_FILE).is_file()
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}

    if (folder / ADAPTER_CONFIG).is_file() or metadata.get("kind") == "adapter":
        if not (folder / ADAPTER_CONFIG).is_file():
            raise InvalidModelFolder(
                f"{folder} is marked as an adapter in galley.json but has no {ADAPTER_CONFIG}"
            )
        adapter_config = _read_json(folder / ADAPTER_CONFIG)
        if not any(folder.glob("adapter_model.*")):
            raise InvalidModelFolder(f"adapter folder {folder} has no adapter_model.safetensors (or .bin)")
        return FolderInfo(
            path=folder,
            kind="adapter",
            scoring=scoring,
            base_key=metadata.get("base_key"),
            base_model_name_or_path=adapter_config.get("base_model_name_or_path"),
            config=config,
            metadata=metadata,
        )

    if not config:
        raise InvalidModelFolder(
            f"model folder {folder} has no config.json; point at a Hugging Face model folder "
            f"(config.json, tokenizer, *.safetensors) or a peft adapter folder (adapter_config.json)"
        )
    info = FolderInfo(path=folder, kind="full", scoring=scoring, config=config, metadata=metadata)
    if not info.has_tokenizer:
        raise InvalidModelFolder(f"model folder {folder} has no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise InvalidModelFolder(f"model folder {folder} has no weights (*.safetensors)")
    return info
