"""Byte sizes of tensor dtypes, and memory amounts written as GiB."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3

# Bytes per element, by torch dtype name (``torch.bfloat16`` -> "bfloat16").
DTYPE_BYTES: dict[str, int] = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}

# Other spellings found in config.json files and on command lines.
DTYPE_ALIASES: dict[str, str] = {
    "float": "float32",
    "fp32": "float32",
    "half": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
    "double": "float64",
}

# Safetensors header dtype codes, mapped to torch dtype names.
SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def normalize_dtype(value: object) -> str:
    """Return the torch dtype name for ``value`` ("torch.bfloat16", "bf16", "bfloat16" -> "bfloat16").

    Raises ValueError naming the value and the accepted names.
    """
    if not isinstance(value, str):
        raise ValueError(f"dtype {value!r} is not a string; use one of {', '.join(DTYPE_BYTES)}")
    name = value.strip().lower().removeprefix("torch.")
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {value!r}; use one of {', '.join(DTYPE_BYTES)}")
    return name


def dtype_bytes(value: str) -> int:
    return DTYPE_BYTES[normalize_dtype(value)]


def format_gib(num_bytes: int | float) -> str:
    """Format a byte count as GiB with two decimals, as every memory message in Galley does."""
    return f"{num_bytes / GIB:.2f} GiB"
