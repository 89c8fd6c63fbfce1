"""The recipe's config: JSON Schema output, reading the config file, validating it whole.

Every problem of a config is reported at once. Each problem names the field by its path
(``config field "optim.lr"``), the value it got and the fix. Its location is the field's
declaration in the recipe, never a line of the config file, because the run manager passes
the runner a pretty-printed copy of the config. The copy's lines do not match the file the
person wrote, and a config from the workbench's form has no file at all.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from galley.run.failures import LoadFailure
from galley.run.loader import Recipe
from galley.sdk.config import KNOWN_MODEL_KEYS_CONTEXT, SCHEMA_KIND_KEY, AdaptiveModel

EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def config_schema(recipe: Recipe) -> dict[str, Any]:
    """Return the JSON Schema of the recipe's config; model fields carry ``x-galley-kind``."""
    if recipe.config_class is None:
        return dict(EMPTY_SCHEMA)
    try:
        return recipe.config_class.model_json_schema()
    except Exception as error:
        raise LoadFailure(
            recipe.display,
            _class_line(recipe) or recipe.entry_line,
            f"cannot build the JSON Schema of {recipe.config_class.__name__}: {error}; "
            f"use JSON-compatible field types",
        ) from None


def has_model_fields(recipe: Recipe) -> bool:
    return recipe.config_class is not None and SCHEMA_KIND_KEY in json.dumps(config_schema(recipe))


def read_config_file(path: str | None) -> dict[str, Any]:
    """Return the config file's object (empty without a file)."""
    if path is None:
        return {}
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise LoadFailure(path, 1, f"cannot read the config file: {error.strerror}; check --config") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise LoadFailure(
            path, error.lineno, f"invalid JSON: {error.msg} (column {error.colno}); fix the config file"
        ) from None
    if not isinstance(data, dict):
        raise LoadFailure(
            path, 1, f"the config must be a JSON object of field values, got {type(data).__name__}"
        )
    return data


def build_config(
    recipe: Recipe, config_path: str | None, known_model_keys: list[str] | None
) -> BaseModel | None:
    """Validate the config file (or the defaults) against the recipe's config class."""
    data = read_config_file(config_path)
    if recipe.config_class is None:
        if data:
            names = ", ".join(sorted(data))
            raise LoadFailure(
                recipe.display,
                recipe.entry_line,
                f"the recipe takes no config, but the config sets {names}; remove them, or add a config "
                f"parameter (a subclass of InputConfig) to {recipe.entry.__name__}",
            )
        return None
    context = {KNOWN_MODEL_KEYS_CONTEXT: known_model_keys} if known_model_keys is not None else {}
    try:
        return recipe.config_class.model_validate(data, context=context)
    except ValidationError as error:
        raise _config_failure(recipe, config_path, error) from None


# Errors of these types already give the fix in their message (see galley.sdk.config).
SELF_EXPLAINING_ERRORS = frozenset({"model_key", "model_key_type", "unknown_model_key"})


def _config_failure(recipe: Recipe, config_path: str | None, error: ValidationError) -> LoadFailure:
    config_class = recipe.config_class
    assert config_class is not None
    declared = _field_lines(recipe)
    class_line = _class_line(recipe) or recipe.entry_line
    problems: list[tuple[int, str]] = []
    for item in error.errors(include_url=False):
        field = _location(item["loc"])
        top = str(item["loc"][0]) if item["loc"] else ""
        line = declared.get(top, class_line)
        if item["type"] == "missing":
            fix = _missing_fix(field, config_class, config_path)
            message = f'config field "{field}" is missing; {fix}'
        elif item["type"] == "extra_forbidden":
            known = ", ".join(config_class.model_fields) or "(none)"
            message = (
                f'config field "{field}" is not a field of {config_class.__name__}; '
                f"remove it from the config (fields: {known})"
            )
        else:
            message = f'config field "{field}" = {_shown_value(item.get("input"))}: {item["msg"]}'
            if item["type"] not in SELF_EXPLAINING_ERRORS:
                message += f'; change "{field}" in the config'
        problems.append((line, message))
    details = [f"  {recipe.display}:{line}: {message}" for line, message in problems]
    if len(problems) == 1:
        summary, count = problems[0][1], "1 problem"
    else:
        # Numbered, because each message contains a "; " before its fix.
        summary = " ".join(f"({number}) {message}" for number, (_, message) in enumerate(problems, 1))
        count = f"{len(problems)} problems"
    return LoadFailure(recipe.display, problems[0][0], f"invalid config ({count}): {summary}", details)


# Longer values (a whole list, say) are cut, so that the error line stays readable.
MAX_SHOWN_VALUE_CHARS = 80


def _shown_value(value: Any) -> str:
    text = json.dumps(value, default=str)
    if len(text) <= MAX_SHOWN_VALUE_CHARS:
        return text
    return text[: MAX_SHOWN_VALUE_CHARS - 3] + "..."


def _missing_fix(field: str, config_class: type[BaseModel], config_path: str | None) -> str:
    info = config_class.model_fields.get(field.split(".")[0])
    example = _example_value(info.annotation if info else None)
    if config_path is None:
        return f'pass --config FILE with {{"{field}": {example}}}'
    return f'add "{field}": {example} to the config'


def _example_value(annotation: Any) -> str:
    names = {int: "<integer>", float: "<number>", bool: "true or false", str: '"<text>"'}
    if annotation in names:
        return names[annotation]
    if annotation is AdaptiveModel:
        return '"<model key>"'
    return "<value>"


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text or "(config)"


def _field_lines(recipe: Recipe) -> dict[str, int]:
    """Return the line of each field declared in the recipe's config class."""
    node = _class_node(recipe)
    if node is None:
        return {}
    return {
        statement.target.id: statement.lineno
        for statement in node.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
    }


def _class_line(recipe: Recipe) -> int | None:
    node = _class_node(recipe)
    return None if node is None else node.lineno


def _class_node(recipe: Recipe) -> ast.ClassDef | None:
    """Return the config class's definition in the recipe file, if it is defined there."""
    config_class = recipe.config_class
    if config_class is None:
        return None
    try:
        tree = ast.parse(recipe.path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == config_class.__name__:
            return node
    return None
