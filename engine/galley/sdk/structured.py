"""Structured generation: ``InferenceModel.generate_and_validate``.

The first attempt sends the thread unchanged, so the prompt decides how the model is asked
for JSON. The JSON value is taken from a fenced ```json block if there is one, else from
the first ``{`` or ``[`` at which a complete JSON value parses. When parsing or validation
fails, the next attempt continues the conversation: the failed reply as an assistant turn,
then a user turn with the error and the expected JSON Schema.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from galley.sdk.errors import StructuredOutputError
from galley.sdk.threads import StringThread

if TYPE_CHECKING:
    from galley.sdk.models import InferenceModel

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.DOTALL)


class NoJsonFound(ValueError):
    pass


def extract_json(text: str) -> Any:
    """Return the first JSON object or array in ``text``; raise NoJsonFound if there is none."""
    decoder = json.JSONDecoder()
    for block in _FENCE.findall(text):
        try:
            return json.loads(block)
        except ValueError:
            continue
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return value
    raise NoJsonFound("the reply contains no JSON object or array")


def parse_completion(completion: str, adapter: TypeAdapter[Any]) -> Any:
    """Extract JSON from ``completion`` and validate it; raise ValueError with the reason."""
    value = extract_json(completion)
    return adapter.validate_python(value)


def retry_prompt(error: str, schema: dict[str, Any]) -> str:
    return (
        f"Your reply could not be used: {error}\n"
        f"Reply again with only a JSON value that matches this JSON Schema:\n{json.dumps(schema)}"
    )


async def generate_and_validate(
    model: InferenceModel, thread: StringThread, pydantic_model: Any, max_parsing_retries: int = 1
) -> tuple[str, Any]:
    if (
        isinstance(max_parsing_retries, bool)
        or not isinstance(max_parsing_retries, int)
        or max_parsing_retries < 0
    ):
        raise ValueError(f"max_parsing_retries must be an int >= 0, got {max_parsing_retries!r}")
    adapter: TypeAdapter[Any] = TypeAdapter(pydantic_model)
    errors: list[str] = []
    completion = ""
    current = thread
    for _attempt in range(max_parsing_retries + 1):
        reply = await model.generate(current)
        completion = reply.last_content()
        try:
            return completion, parse_completion(completion, adapter)
        except (NoJsonFound, ValidationError) as error:
            reason = str(error)
        errors.append(reason)
        current = reply.user(retry_prompt(reason, adapter.json_schema()))
    name = getattr(pydantic_model, "__name__", repr(pydantic_model))
    raise StructuredOutputError(
        f"the reply did not validate as {name} after {max_parsing_retries + 1} attempt(s); "
        f"last error: {errors[-1]}. Ask for JSON in the prompt or raise max_parsing_retries",
        completion,
        errors,
    )
