"""JSON extraction and validation behind generate_and_validate."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from galley.sdk.structured import NoJsonFound, extract_json, parse_completion, retry_prompt


class Verdict(BaseModel):
    score: int
    reason: str


def test_fenced_block_wins():
    text = 'Here: {"ignored": true}\n```json\n{"score": 3, "reason": "ok"}\n```'
    assert extract_json(text) == {"score": 3, "reason": "ok"}


def test_first_complete_value_in_prose():
    text = 'I think {"score": 2, "reason": "a {brace} in text"} and more {"score": 9}'
    assert extract_json(text) == {"score": 2, "reason": "a {brace} in text"}


def test_incomplete_object_is_skipped():
    assert extract_json('{"score": [1, 2 then [4, 5]') == [4, 5]


def test_no_json_raises():
    with pytest.raises(NoJsonFound, match="no JSON object or array"):
        extract_json("Paris is the capital.")


def test_parse_completion_validates():
    adapter = TypeAdapter(Verdict)
    assert parse_completion('{"score": 1, "reason": "r"}', adapter) == Verdict(score=1, reason="r")
    with pytest.raises(ValidationError):
        parse_completion('{"score": "high"}', adapter)


def test_retry_prompt_carries_error_and_schema():
    prompt = retry_prompt("field 'reason' is missing", TypeAdapter(Verdict).json_schema())
    assert "field 'reason' is missing" in prompt
    assert '"required": ["score", "reason"]' in prompt
