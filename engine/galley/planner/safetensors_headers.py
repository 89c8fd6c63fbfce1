"""Read tensor names, dtypes and shapes from safetensors headers, without loading any weights.

A safetensors file starts with an 8-byte little-endian unsigned header length N, followed by
N bytes of JSON: ``{"tensor.name": {"dtype": "BF16", "shape": [rows, cols],
"data_offsets": [begin, end]}, ..., "__metadata__": {...}}``. Reading those bytes is all the
planner needs to know a checkpoint's exact weight sizes.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from .units import SAFETENSORS_DTYPES, dtype_bytes

# The safetensors format rejects headers above 100 MB; a larger length means a corrupt file.
MAX_HEADER_BYTES = 100_000_000

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Shards written by save_pretrained: model-00001-of-00004.safetensors.
SHARD_PATTERN = re.compile(r"^model-\d+-of-\d+\.safetensors$")


class SafetensorsHeaderError(ValueError):
    """A safetensors file or index in a model folder is unreadable or inconsistent."""


@dataclass(frozen=True)
class StoredTensor:
    name: str
    dtype: str  # torch dtype name, e.g. "bfloat16"
    shape: tuple[int, ...]
    nbytes: int  # bytes the tensor occupies in its file
    file: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_safetensors_header(path: Path) -> dict[str, StoredTensor]:
    """Return the tensors listed in one safetensors file's header, by name."""
    path = Path(path)
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise SafetensorsHeaderError(f"{path} is shorter than the 8-byte safetensors header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise SafetensorsHeaderError(
                f"{path} declares a {length}-byte header (the format allows {MAX_HEADER_BYTES}); "
                f"the file is corrupt or not safetensors"
            )
        raw = handle.read(length)
    if len(raw) < length:
        raise SafetensorsHeaderError(f"{path} ends inside its {length}-byte header; the file is truncated")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsHeaderError(f"{path} has a header that is not valid JSON: {error}") from error
    if not isinstance(header, dict):
        raise SafetensorsHeaderError(f"{path} has a header that is not a JSON object")

    tensors: dict[str, StoredTensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _stored_tensor(path, name, entry)
    return tensors


def _stored_tensor(path: Path, name: str, entry: object) -> StoredTensor:
    try:
        code = entry["dtype"]  # type: ignore[index]
        shape = tuple(int(size) for size in entry["shape"])  # type: ignore[index]
        begin, end = (int(offset) for offset in entry["data_offsets"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as error:
        raise SafetensorsHeaderError(
            f"{path}: entry {name!r} lacks a valid dtype, shape or data_offsets ({error!r})"
        ) from error
    if code not in SAFETENSORS_DTYPES:
        raise SafetensorsHeaderError(
            f"{path}: tensor {name!r} has dtype {code!r}; supported: {', '.join(SAFETENSORS_DTYPES)}"
        )
    dtype = SAFETENSORS_DTYPES[code]
    nbytes = end - begin
    expected = math.prod(shape) * dtype_bytes(dtype)
    if nbytes != expected:
        raise SafetensorsHeaderError(
            f"{path}: tensor {name!r} spans {nbytes} bytes but its shape {list(shape)} in {code} needs {expected}"
        )
    return StoredTensor(name=name, dtype=dtype, shape=shape, nbytes=nbytes, file=path.name)


def weight_files(folder: Path) -> list[Path]:
    """List the model weight files of an HF folder: those named by the index, else
    ``model.safetensors``, else ``model-*-of-*.safetensors`` shards.

    Other safetensors files (``adapter_model.safetensors``, ``value_head.safetensors``) hold
    adapters or heads, not base weights, so they are left out. Returns [] when there are none.
    """
    folder = Path(folder)
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise SafetensorsHeaderError(f"{index_path} has no readable weight_map: {error!r}") from error
        names = sorted(set(weight_map.values()))
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise SafetensorsHeaderError(f"{index_path} names files that are missing: {', '.join(missing)}")
        return [folder / name for name in names]
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    return sorted(path for path in folder.glob("*.safetensors") if SHARD_PATTERN.match(path.name))


def read_folder_tensors(folder: Path) -> dict[str, StoredTensor] | None:
    """Return every weight tensor of an HF model folder by name, or None without safetensors weights."""
    files = weight_files(folder)
    if not files:
        return None
    tensors: dict[str, StoredTensor] = {}
    for path in files:
        for name, tensor in read_safetensors_header(path).items():
            if name in tensors:
                raise SafetensorsHeaderError(
                    f"tensor {name!r} appears in both {tensors[name].file} and {path.name}"
                )
            tensors[name] = tensor
    _check_index_complete(Path(folder), tensors)
    return tensors


def _check_index_complete(folder: Path, tensors: dict[str, StoredTensor]) -> None:
    index_path = folder / INDEX_FILE
    if not index_path.is_file():
        return
    listed = json.loads(index_path.read_text())["weight_map"]
    absent = sorted(name for name in listed if name not in tensors)
    if absent:
        examples = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise SafetensorsHeaderError(f"{index_path} lists tensors that no weight file contains: {examples}")
