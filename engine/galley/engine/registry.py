"""Model registry access: the control plane's HTTP API, or a standalone in-memory registry.

With ``--registry-url`` the engine requests records from the control plane (docs/contracts.md):
``GET /api/internal/models/{key}`` and ``POST /api/internal/models``, with the token from
``GALLEY_API_TOKEN``. Standalone (``--model KEY=PATH``), records are built from the folders'
``config.json`` and kept in memory; models saved by recipes are added until the engine exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from galley.engine.errors import InvalidRequest, ModelError, NotFound
from galley.models.folders import InvalidModelFolder, inspect_folder
from galley.planner import ArchitectureError, SafetensorsHeaderError, architecture_facts
from galley.protocol import ModelLineage, ModelRecord, NewModel

log = logging.getLogger("galley.engine.registry")

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def unknown_key_error(key: str, known: list[str]) -> NotFound:
    listing = ", ".join(sorted(known)) or "none"
    return NotFound(
        f"model key {key!r} is not in the registry; known keys: {listing}",
        {"key": key, "known_keys": sorted(known)},
    )


def slugify(name: str) -> str:
    """Turn a model name such as "My Adapter v2" into a registry key ("my-adapter-v2")."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip("-.")
    if not slug:
        raise InvalidRequest(f"model name {name!r} has no letters or digits to make a registry key from")
    return slug


def key_change_note(name: str, key: str) -> str | None:
    """Explain why a model saved as ``name`` got the registry key ``key``; None when they are equal."""
    if key == name:
        return None
    slug = slugify(name)
    reasons = []
    if slug != name:
        reasons.append('registry keys contain only lowercase letters, digits, ".", "_" and "-"')
    if key != slug:
        reasons.append(f"the key {slug!r} was already taken")
    return (
        f"model {name!r} was saved under the registry key {key!r}, because {' and '.join(reasons)}; "
        f"its display name stays {name!r}. Load it with model_registry://{key}"
    )


class Registry(ABC):
    @abstractmethod
    async def get(self, key: str) -> ModelRecord:
        """Return the record of ``key``; raise NotFound listing the known keys."""

    @abstractmethod
    async def known_keys(self) -> list[str]: ...

    @abstractmethod
    async def register(self, model: NewModel) -> ModelRecord:
        """Add a saved model; raise InvalidRequest if its key exists."""

    async def free_key(self, name: str, taken: Callable[[str], bool] = lambda key: False) -> str:
        """Return a key derived from ``name`` ("name", "name-2", ...) that no record uses and ``taken`` allows."""
        base = slugify(name)
        known = set(await self.known_keys())
        key, suffix = base, 2
        while key in known or taken(key):
            key, suffix = f"{base}-{suffix}", suffix + 1
        return key


# ---------------------------------------------------------------------------------------
# Control plane over HTTP


class HttpRegistry(Registry):
    def __init__(self, base_url: str, token: str | None, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                return error.code, json.loads(payload or b"null")
            except json.JSONDecodeError:
                return error.code, {"error": {"message": payload.decode(errors="replace")[:500]}}
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise ModelError(
                f"cannot reach the model registry at {self.base_url}: {error}; "
                f"check that the control plane is running and --registry-url is right"
            ) from None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return await asyncio.to_thread(self._request, method, path, body)

    @staticmethod
    def _message(payload: Any) -> str:
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            return str(payload["error"].get("message", payload))
        return str(payload)

    async def get(self, key: str) -> ModelRecord:
        status, payload = await self._call("GET", f"/api/internal/models/{urllib.parse.quote(key, safe='')}")
        if status == 404:
            known = payload.get("error", {}).get("known_keys") if isinstance(payload, dict) else None
            if known is None:
                known = await self.known_keys()
            raise unknown_key_error(key, list(known))
        if status == 401:
            raise ModelError(
                "the model registry rejected the engine's token; set GALLEY_API_TOKEN to the control plane's token"
            )
        if status != 200:
            raise ModelError(
                f"the model registry returned HTTP {status} for {key!r}: {self._message(payload)}"
            )
        return ModelRecord.model_validate(payload)

    async def known_keys(self) -> list[str]:
        status, payload = await self._call("GET", "/api/internal/models")
        if status != 200:
            raise ModelError(
                f"the model registry returned HTTP {status} listing models: {self._message(payload)}"
            )
        return [record["key"] for record in payload.get("models", [])]

    async def register(self, model: NewModel) -> ModelRecord:
        status, payload = await self._call("POST", "/api/internal/models", model.model_dump())
        if status == 409:
            raise InvalidRequest(
                f"model key {model.key!r} already exists in the registry; choose another name"
            )
        if status not in (200, 201):
            raise ModelError(
                f"the model registry rejected the registration of {model.key!r} (HTTP {status}): {self._message(payload)}"
            )
        return ModelRecord.model_validate(payload)


# ---------------------------------------------------------------------------------------
# Standalone


def basic_facts(config: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """Architecture facts from config.json (and the folder's safetensors headers) through the planner.

    For a family the planner cannot describe, the plain config.json fields, without a parameter count.
    """
    try:
        return architecture_facts(config, folder).to_dict()
    except (ArchitectureError, SafetensorsHeaderError) as error:
        log.warning("cannot read architecture facts of %s: %s", folder, error)
    return {
        "family": config.get("model_type"),
        "architecture": (config.get("architectures") or [None])[0],
        "parameters": None,
        "layers": config.get("num_hidden_layers"),
        "heads": config.get("num_attention_heads"),
        "kv_heads": config.get("num_key_value_heads", config.get("num_attention_heads")),
        "hidden": config.get("hidden_size"),
        "vocab": config.get("vocab_size"),
        "dtype": config.get("torch_dtype") or config.get("dtype"),
    }


def parse_model_arg(value: str) -> tuple[str, Path]:
    """Parse ``KEY=PATH`` from ``--model``/``--architecture``."""
    key, separator, path = value.partition("=")
    if not separator or not key or not path:
        raise InvalidRequest(
            f"--model {value!r} is invalid; write KEY=PATH, e.g. --model qwen3-32b=/models/qwen3"
        )
    if not KEY_PATTERN.match(key):
        raise InvalidRequest(f"model key {key!r} is invalid; use letters, digits, '.', '_' and '-'")
    return key, Path(path).expanduser().resolve()


def record_from_folder(
    key: str,
    folder: Path,
    *,
    name: str | None = None,
    kind: str = "base",
    base_key: str | None = None,
    lineage: ModelLineage | None = None,
) -> ModelRecord:
    """Build a registry record for a model folder; raise ModelError if it cannot be loaded.

    The folder decides adapter and scoring kinds; ``kind`` ("base" or "full") applies otherwise.
    """
    try:
        info = inspect_folder(folder)
    except InvalidModelFolder as error:
        raise ModelError(str(error)) from None
    if info.kind == "adapter":
        kind = "adapter"
    elif info.scoring:
        kind = "scoring"
    return ModelRecord(
        key=key,
        name=name or key,
        kind=kind,  # type: ignore[arg-type]
        path=str(folder),
        base_key=base_key or info.base_key,
        config=info.config,
        facts=basic_facts(info.config, folder) if info.config else {},
        lineage=lineage or ModelLineage(),
    )


def architecture_record(key: str, path: Path) -> ModelRecord:
    """Build an architecture-only record (no weights) from a config.json or its folder."""
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise ModelError(f"--architecture {key}={path}: no config.json there")
    config = json.loads(config_file.read_text())
    return ModelRecord(
        key=key, name=key, kind="architecture", path=None, config=config, facts=basic_facts(config, None)
    )


class LocalRegistry(Registry):
    def __init__(self, records: list[ModelRecord]):
        self.records: dict[str, ModelRecord] = {record.key: record for record in records}
        self._link_adapters()

    @classmethod
    def from_args(cls, models: list[str], architectures: list[str]) -> LocalRegistry:
        records: list[ModelRecord] = []
        for value in models:
            key, path = parse_model_arg(value)
            records.append(record_from_folder(key, path))
        for value in architectures:
            key, path = parse_model_arg(value)
            records.append(architecture_record(key, path))
        duplicates = {r.key for r in records if sum(o.key == r.key for o in records) > 1}
        if duplicates:
            raise InvalidRequest(f"model keys given more than once: {', '.join(sorted(duplicates))}")
        return cls(records)

    def _link_adapters(self) -> None:
        """Give adapters without a base key the record whose folder their adapter config names."""
        by_path = {record.path: record.key for record in self.records.values() if record.path}
        for key, record in list(self.records.items()):
            if record.kind != "adapter" or record.base_key:
                continue
            base_path = inspect_folder(record.path).base_model_name_or_path if record.path else None
            resolved = str(Path(base_path).resolve()) if base_path else None
            if resolved in by_path:
                self.records[key] = record.model_copy(update={"base_key": by_path[resolved]})

    async def get(self, key: str) -> ModelRecord:
        record = self.records.get(key)
        if record is None:
            raise unknown_key_error(key, list(self.records))
        return record

    async def known_keys(self) -> list[str]:
        return list(self.records)

    async def register(self, model: NewModel) -> ModelRecord:
        if model.key in self.records:
            raise InvalidRequest(
                f"model key {model.key!r} already exists in the registry; choose another name"
            )
        record = record_from_folder(
            model.key,
            Path(model.path),
            name=model.name,
            kind=model.kind,
            base_key=model.adapter_base_key,
            lineage=ModelLineage(
                parent_key=model.parent_key,
                run_id=model.run_id,
                recipe_hash=model.recipe_hash,
                optim_step=model.optim_step,
            ),
        )
        parent = self.records.get(model.parent_key or "")
        if parent is not None:
            record = record.model_copy(update={"defaults": parent.defaults})
        self.records[record.key] = record
        return record
