"""The config.json files of public models in ``resources/architectures``, for planning without weights.

``resources/architectures/index.json`` maps each folder name to its default registry key,
display name and Hugging Face repository:
``{"version": 1, "architectures": {"Qwen3-32B": {"key": "qwen3-32b", "display_name": ..., "hf_repo": ..., "config": "Qwen3-32B/config.json"}}}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .architecture import ArchitectureFacts, architecture_facts

INDEX_FILE = "index.json"


@dataclass(frozen=True)
class ArchitectureResource:
    name: str  # folder name, e.g. "Qwen3-32B"
    key: str  # default registry key, e.g. "qwen3-32b"
    display_name: str
    hf_repo: str
    config_path: Path

    def config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def facts(self) -> ArchitectureFacts:
        return architecture_facts(self.config(), name=self.name)


def architectures_dir() -> Path:
    """Locate ``resources/architectures``: ``$GALLEY_RESOURCES_DIR/architectures`` if set, else the
    first ``resources/architectures`` with an index.json above this file."""
    override = os.environ.get("GALLEY_RESOURCES_DIR")
    if override:
        folder = Path(override) / "architectures"
        if not (folder / INDEX_FILE).is_file():
            raise FileNotFoundError(f"GALLEY_RESOURCES_DIR={override} has no architectures/{INDEX_FILE}")
        return folder
    start = Path(__file__).resolve()
    for parent in start.parents:
        folder = parent / "resources" / "architectures"
        if (folder / INDEX_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"resources/architectures/{INDEX_FILE} not found above {start}; set GALLEY_RESOURCES_DIR to the resources folder"
    )


def list_architectures(folder: Path | None = None) -> list[ArchitectureResource]:
    folder = folder or architectures_dir()
    index = json.loads((folder / INDEX_FILE).read_text())
    return [
        ArchitectureResource(
            name=name,
            key=entry["key"],
            display_name=entry["display_name"],
            hf_repo=entry["hf_repo"],
            config_path=folder / entry["config"],
        )
        for name, entry in index["architectures"].items()
    ]


def find_architecture(name_or_key: str, folder: Path | None = None) -> ArchitectureResource:
    """Return the resource whose folder name or registry key is ``name_or_key`` (case-insensitive)."""
    resources = list_architectures(folder)
    requested = name_or_key.lower()
    for resource in resources:
        if requested in (resource.name.lower(), resource.key):
            return resource
    known = ", ".join(resource.key for resource in resources)
    raise LookupError(f"architecture {name_or_key!r} not found in resources; known: {known}")
