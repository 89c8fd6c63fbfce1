"""Recipe configuration types: ``InputConfig`` and the ``AdaptiveModel`` field type."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from galley.protocol import MODEL_REGISTRY_SCHEME

# Key of the pydantic validation context that carries the registry's model keys, which the
# runner fetches from the control plane. Without it, model fields are not checked against
# the registry, and the engine rejects an unknown key only at spawn time.
KNOWN_MODEL_KEYS_CONTEXT = "galley_known_model_keys"

# Marks a JSON Schema property as a registry model, so the config form shows a model picker.
SCHEMA_KIND_KEY = "x-galley-kind"


class InputConfig(BaseModel):
    """Base class of a recipe's input config. Unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class AdaptiveModel:
    """A model of the registry, given in a config as its key (``"qwen3-32b"``).

    ``"model_registry://qwen3-32b"`` is accepted too. ``.key`` is the bare key and ``.path``
    the ``model_registry://`` form that ``client.model(...)`` takes.
    """

    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = parse_model_key(key)

    @property
    def path(self) -> str:
        return f"{MODEL_REGISTRY_SCHEME}{self.key}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AdaptiveModel) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"AdaptiveModel({self.key!r})"

    def __str__(self) -> str:
        return self.key

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda model: model.key),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "minLength": 1, SCHEMA_KIND_KEY: "model"}

    @classmethod
    def _validate(cls, value: Any, info: ValidationInfo) -> AdaptiveModel:
        if isinstance(value, AdaptiveModel):
            model = value
        elif isinstance(value, str):
            try:
                model = cls(value)
            except ValueError as error:
                raise PydanticCustomError("model_key", "{reason}", {"reason": str(error)}) from None
        else:
            raise PydanticCustomError(
                "model_key_type",
                "expected a registry model key string such as 'qwen3-32b', got {value}",
                {"value": repr(value)},
            )
        known = (info.context or {}).get(KNOWN_MODEL_KEYS_CONTEXT)
        if known is not None and model.key not in known:
            listed = ", ".join(sorted(known)) or "(the registry has no models)"
            raise PydanticCustomError(
                "unknown_model_key",
                "unknown model key '{key}'; known keys: {known}. Use one of them, or import the model "
                "into the registry first (galley models import DIR --key {key})",
                {"key": model.key, "known": listed},
            )
        return model


def parse_model_key(value: str) -> str:
    """Return the registry key of ``key`` or ``model_registry://key``; raise ValueError if malformed."""
    if not isinstance(value, str):
        raise TypeError(f"a model key must be a str, got {type(value).__name__}: {value!r}")
    key = value.removeprefix(MODEL_REGISTRY_SCHEME)
    if "://" in key:
        raise ValueError(
            f"model {value!r} is not a registry model; write its key, or {MODEL_REGISTRY_SCHEME}<key>"
        )
    if not key or key != key.strip() or any(ch.isspace() for ch in key):
        raise ValueError(f"model key {value!r} is empty or contains whitespace; write it as e.g. 'qwen3-32b'")
    return key
