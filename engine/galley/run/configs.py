"""The recipe's config: JSON Schema output, reading the config file, validating it whole.

Every problem of a config is reported at once. Each problem names the field by its path
(``config field "optim.lr"``), the value it got and the fix. Its location is the field's
declaration in the recipe, never a line of the config file, because the run manager passes
the runner a pretty-printed copy of the config. The copy's lines do not match the file the
person wrote, and a config from the workbench's form has no file at all.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from galley.run.config_fields import (
    Declarations,
    FieldStep,
    UnionBranch,
    input_names,
    resolve_location,
    split_union_branches,
)
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
            _class_line(recipe),
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
    """Validate the config file (or the defaults) against the recipe's config class.

    Unknown keys are rejected at every level, also in nested models that are plain
    ``BaseModel`` subclasses, so that a typo such as ``"lrr"`` never falls back to a default.
    Only a nested model that sets ``extra="allow"`` or ``extra="ignore"`` itself keeps them.
    """
    data = read_config_file(config_path)
    config_class = recipe.config_class
    if config_class is None:
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
        return config_class.model_validate(data, context=context, extra="forbid")
    except ValidationError as error:
        problems = [
            item for item in error.errors(include_url=False) if not _extra_allowed(config_class, item)
        ]
        if problems:
            raise _config_failure(recipe, config_path, problems) from None
    # Every problem was an extra key that its own model allows, so validate with the models' settings.
    try:
        return config_class.model_validate(data, context=context)
    except ValidationError as error:
        raise _config_failure(recipe, config_path, error.errors(include_url=False)) from None


def _extra_allowed(config_class: type[BaseModel], item: ErrorDetails) -> bool:
    if item["type"] != "extra_forbidden":
        return False
    steps = resolve_location(config_class, tuple(item["loc"]))
    if not steps or steps[-1].field is not None:
        return False
    return steps[-1].model.model_config.get("extra") in ("allow", "ignore")


# Errors of these types already give the fix in their message (see galley.sdk.config).
SELF_EXPLAINING_ERRORS = frozenset({"model_key", "model_key_type", "unknown_model_key"})


def _config_failure(recipe: Recipe, config_path: str | None, errors: list[ErrorDetails]) -> LoadFailure:
    config_class = recipe.config_class
    assert config_class is not None
    declarations = Declarations(recipe.path, recipe.module.__name__)
    fallback_line = _class_line(recipe)
    problems: list[tuple[int, str]] = []
    for item, path in _best_union_branches(config_class, errors):
        loc = tuple(item["loc"])
        field = _location(path)
        steps = resolve_location(config_class, loc)
        line = _declaration_line(steps, declarations) or fallback_line
        if item["type"] == "missing":
            annotation = steps[-1].field.annotation if steps and steps[-1].field else None
            message = f'config field "{field}" is missing; {_missing_fix(path, annotation, config_path)}'
        elif item["type"] == "extra_forbidden":
            model = steps[-1].model if steps else config_class
            message = f'config field "{field}" is not a field of {model.__name__}; {_extra_fix(path, model)}'
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


# One pydantic error, its config path without union class names, and the union members it passes.
TaggedError = tuple[ErrorDetails, tuple[Any, ...], list[UnionBranch]]


def _best_union_branches(
    config_class: type[BaseModel], errors: list[ErrorDetails]
) -> list[tuple[ErrorDetails, tuple[Any, ...]]]:
    """Keep the errors of the union member that fits the config best, each with its config path.

    pydantic reports every member of a union of models that failed, with the class name in the
    location (``choice.A.bogus``, ``choice.B.y``). As pydantic's smart mode does, the member
    that fits best is one whose Literal fields match (no ``literal_error``), then the one with
    the fewest errors, then the one declared first.
    """
    tagged: list[TaggedError] = []
    for item in errors:
        path, branches = split_union_branches(config_class, tuple(item["loc"]))
        tagged.append((item, path, branches))
    return [(item, path) for item, path, _ in _choose_branches(tagged)]


def _choose_branches(tagged: list[TaggedError]) -> list[TaggedError]:
    kept = [entry for entry in tagged if not entry[2]]
    # The errors of one union share the config path before its first branch.
    unions: dict[tuple[Any, ...], dict[str, list[TaggedError]]] = {}
    for entry in tagged:
        if entry[2]:
            first = entry[2][0]
            unions.setdefault(entry[1][: first.at], {}).setdefault(first.name, []).append(entry)
    for by_branch in unions.values():
        literal_free = [branch for branch in by_branch.values() if not _has_literal_error(branch)]
        if not literal_free:
            merged = _merged_literal_error(list(by_branch.values()))
            if merged is not None:
                kept.append(merged)
                continue
        candidates = literal_free or list(by_branch.values())
        best = min(candidates, key=len)
        kept.extend(_choose_branches([(item, path, branches[1:]) for item, path, branches in best]))
    return kept


def _has_literal_error(branch: list[TaggedError]) -> bool:
    return any(item["type"] == "literal_error" for item, _, _ in branch)


def _merged_literal_error(branches: list[list[TaggedError]]) -> TaggedError | None:
    """Return one error listing every member's expected value when all fail on the same Literal field."""
    literal_errors = [
        next(entry for entry in branch if entry[0]["type"] == "literal_error") for branch in branches
    ]
    paths = {path for _, path, _ in literal_errors}
    if len(paths) != 1:
        return None
    item, path, _ = literal_errors[0]
    expected = " or ".join(str(error.get("ctx", {}).get("expected", "?")) for error, _, _ in literal_errors)
    merged: ErrorDetails = {**item, "msg": f"Input should be {expected}"}
    return merged, path, []


def _declaration_line(steps: list[FieldStep], declarations: Declarations) -> int | None:
    """Return the line of the innermost declaration along the location that the recipe file has.

    A declared field points at its own line. An unknown key points at the class that lacks it.
    """
    for step in reversed(steps):
        if step.name is not None:
            line = declarations.field_line(step.model, step.name)
        else:
            line = declarations.class_line(step.model)
        if line is not None:
            return line
    return None


def _extra_fix(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    """Suggest the key the config must use, from the keys the model accepts (aliases included)."""
    accepted = {name: input_names(model, name, info) for name, info in model.model_fields.items()}
    known = [key for keys in accepted.values() for key in keys]
    listed = ", ".join(known) or "(none)"
    key = str(loc[-1]) if loc else ""
    if key in accepted:
        # The field's own name, where the model accepts only its alias.
        suggestion = _location((*loc[:-1], accepted[key][0]))
        return f'write it as "{suggestion}", the alias that {model.__name__} accepts (fields: {listed})'
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        suggestion = _location((*loc[:-1], close[0]))
        return f'did you mean "{suggestion}"? Rename or remove it in the config (fields: {listed})'
    return f"remove it from the config (fields: {listed})"


# Longer values (a whole list, say) are cut, so that the error line stays readable.
MAX_SHOWN_VALUE_CHARS = 80


def _shown_value(value: Any) -> str:
    text = json.dumps(value, default=str)
    if len(text) <= MAX_SHOWN_VALUE_CHARS:
        return text
    return text[: MAX_SHOWN_VALUE_CHARS - 3] + "..."


def _missing_fix(loc: tuple[Any, ...], annotation: Any, config_path: str | None) -> str:
    example = _example_value(annotation)
    key = str(loc[-1]) if loc else ""
    parent = _location(loc[:-1]) if len(loc) > 1 else None
    if config_path is None:
        return f"pass --config FILE with {{{_nested_example(loc, example)}}}"
    if parent is None:
        return f'add "{key}": {example} to the config'
    return f'add "{key}": {example} to "{parent}" in the config'


def _nested_example(loc: tuple[Any, ...], example: str) -> str:
    """Return ``"a": {"b": <value>}`` for the location ``("a", "b")``; list indexes are kept as paths."""
    if len(loc) > 1 and all(isinstance(part, str) for part in loc):
        return f'"{loc[0]}": {{{_nested_example(loc[1:], example)}}}'
    return f'"{_location(loc)}": {example}'


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


def _class_line(recipe: Recipe) -> int:
    """Return the line of the config class in the recipe file, or of the entry point."""
    assert recipe.config_class is not None
    declarations = Declarations(recipe.path, recipe.module.__name__)
    return declarations.class_line(recipe.config_class) or recipe.entry_line
