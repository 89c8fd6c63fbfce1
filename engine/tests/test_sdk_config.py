"""InputConfig and AdaptiveModel: validation against registry keys and the JSON Schema."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field, ValidationError

from galley.runtime import AdaptiveModel, InputConfig
from galley.sdk.config import KNOWN_MODEL_KEYS_CONTEXT

KNOWN = {KNOWN_MODEL_KEYS_CONTEXT: ["llama-3.1-8b-instruct", "qwen3-32b"]}


class TrainConfig(InputConfig):
    model_to_train: Annotated[AdaptiveModel, Field(description="Model to train")]
    judge: AdaptiveModel | None = None
    tp: Annotated[int, Field(ge=1)] = 1


def test_key_and_path():
    config = TrainConfig.model_validate({"model_to_train": "qwen3-32b"}, context=KNOWN)
    assert config.model_to_train.key == "qwen3-32b"
    assert config.model_to_train.path == "model_registry://qwen3-32b"


def test_registry_path_form_is_accepted():
    config = TrainConfig.model_validate({"model_to_train": "model_registry://qwen3-32b"}, context=KNOWN)
    assert config.model_to_train.key == "qwen3-32b"


def test_unknown_key_lists_known_keys():
    with pytest.raises(ValidationError) as caught:
        TrainConfig.model_validate({"model_to_train": "gpt-5"}, context=KNOWN)
    message = caught.value.errors()[0]["msg"]
    assert "unknown model key 'gpt-5'" in message
    assert "known keys: llama-3.1-8b-instruct, qwen3-32b" in message
    assert caught.value.errors()[0]["loc"] == ("model_to_train",)


def test_all_problems_are_reported_together():
    data = {"model_to_train": "gpt-5", "judge": "nope", "tp": 0, "unexpected": 1}
    with pytest.raises(ValidationError) as caught:
        TrainConfig.model_validate(data, context=KNOWN)
    locations = sorted(error["loc"][0] for error in caught.value.errors())
    assert locations == ["judge", "model_to_train", "tp", "unexpected"]


def test_without_registry_context_any_key_is_accepted():
    config = TrainConfig.model_validate({"model_to_train": "anything"})
    assert config.model_to_train == AdaptiveModel("anything")


def test_empty_registry_is_reported():
    with pytest.raises(ValidationError, match="the registry has no models"):
        TrainConfig.model_validate({"model_to_train": "x"}, context={KNOWN_MODEL_KEYS_CONTEXT: []})


@pytest.mark.parametrize("value", ["", "two words", "openai://gpt-4o", 3])
def test_malformed_values_are_rejected(value):
    with pytest.raises(ValidationError):
        TrainConfig.model_validate({"model_to_train": value})


def test_serializes_as_the_key():
    config = TrainConfig.model_validate({"model_to_train": "qwen3-32b"})
    assert config.model_dump() == {"model_to_train": "qwen3-32b", "judge": None, "tp": 1}
    assert TrainConfig.model_validate_json(config.model_dump_json()) == config


def test_schema_marks_model_fields():
    schema = TrainConfig.model_json_schema()
    model_field = schema["properties"]["model_to_train"]
    assert model_field["x-galley-kind"] == "model"
    assert model_field["type"] == "string"
    assert model_field["description"] == "Model to train"
    judge_variants = schema["properties"]["judge"]["anyOf"]
    assert {"type": "string", "minLength": 1, "x-galley-kind": "model"} in judge_variants
    assert "x-galley-kind" not in schema["properties"]["tp"]
    assert schema["additionalProperties"] is False


def test_extra_fields_are_forbidden():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TrainConfig.model_validate({"model_to_train": "qwen3-32b", "typo": 1})
