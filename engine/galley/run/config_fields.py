"""Mapping a pydantic error location of a recipe's config to the declarations it passes through.

A location such as ``("optimizer", "schedules", 0, "warmup")`` crosses several models:
``Config.optimizer``, then ``Optimizer.schedules``, then list items of ``Schedule``. The
runner reports each config problem at the innermost declaration that is in the recipe file,
so these helpers resolve the models along the way and find their lines in the source.
"""

from __future__ import annotations

import ast
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo

SEQUENCE_ORIGINS = (list, tuple, set, frozenset)
MAPPING_ORIGINS = (dict,)


@dataclass(frozen=True)
class FieldStep:
    """One key of a config location, looked up in the model that contains it.

    ``name`` and ``field`` are None when the model declares no field of that key (an unknown key).
    """

    model: type[BaseModel]
    key: str
    name: str | None
    field: FieldInfo | None


def resolve_location(root: type[BaseModel], loc: tuple[Any, ...]) -> list[FieldStep]:
    """Return the model keys along ``loc``, outermost first; stops where the types are unknown."""
    steps: list[FieldStep] = []
    current: Any = root
    for part in loc:
        candidates = _unwrap(current)
        models = [candidate for candidate in candidates if _is_model(candidate)]
        if isinstance(part, str):
            # A union of several models puts the chosen member's class name into the location.
            tagged = [model for model in models if model.__name__ == part]
            if len(models) > 1 and len(tagged) == 1:
                current = tagged[0]
                continue
            if len(models) == 1:
                model = models[0]
                name, field = _field_of(model, part)
                steps.append(FieldStep(model, part, name, field))
                if field is None:
                    break
                current = field.annotation
                continue
            mapping = _mapping_value_type(candidates)
            if mapping is None:
                break
            current = mapping
        else:
            item = _sequence_item_type(candidates)
            if item is None:
                break
            current = item
    return steps


@dataclass(frozen=True)
class UnionBranch:
    """A union member that pydantic tried, by the class name it puts into an error location.

    ``at`` is the number of leading parts of the location without class names, so errors with
    the same ``at`` and the same parts before it come from the same union.
    """

    at: int
    name: str


def split_union_branches(
    root: type[BaseModel], loc: tuple[Any, ...]
) -> tuple[tuple[Any, ...], list[UnionBranch]]:
    """Split ``loc`` into the config path (without union class names) and the branches it passes.

    Only unions of several models are recognized; a union of a model and a scalar type keeps
    pydantic's member names (``"int"``) in the path.
    """
    path: list[Any] = []
    branches: list[UnionBranch] = []
    current: Any = root
    for part in loc:
        candidates = _unwrap(current)
        models = [candidate for candidate in candidates if _is_model(candidate)]
        if isinstance(part, str):
            tagged = [model for model in models if model.__name__ == part]
            if len(models) > 1 and len(tagged) == 1:
                branches.append(UnionBranch(len(path), part))
                current = tagged[0]
                continue
            path.append(part)
            if len(models) == 1:
                _, field = _field_of(models[0], part)
                current = None if field is None else field.annotation
            else:
                current = _mapping_value_type(candidates)
        else:
            path.append(part)
            current = _sequence_item_type(candidates)
    return tuple(path), branches


def _field_of(model: type[BaseModel], key: str) -> tuple[str | None, FieldInfo | None]:
    for name, info in model.model_fields.items():
        if key == name or key in input_names(model, name, info):
            return name, info
    return None, None


def input_names(model: type[BaseModel], name: str, info: FieldInfo) -> list[str]:
    """Return the keys that a config may use for a field, with pydantic's alias rules.

    A field with an alias takes the alias only, unless the model sets ``populate_by_name``
    (or ``validate_by_name``), which adds the field name. ``validate_by_alias=False`` turns the
    alias off. An ``AliasPath`` reaches into nested data and gives no single key.
    """
    settings = model.model_config
    aliases: list[str] = []
    validation_alias = info.validation_alias
    if isinstance(validation_alias, str):
        aliases = [validation_alias]
    elif isinstance(validation_alias, AliasChoices):
        aliases = [choice for choice in validation_alias.choices if isinstance(choice, str)]
    elif validation_alias is None and info.alias is not None:
        aliases = [info.alias]
    if not aliases or settings.get("validate_by_alias") is False:
        return [name]
    by_name = bool(settings.get("populate_by_name") or settings.get("validate_by_name"))
    return [*aliases, name] if by_name else aliases


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _unwrap(annotation: Any) -> list[Any]:
    """Return the alternatives of an annotation: Annotated is stripped and unions are flattened."""
    if annotation is None:
        return []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [member for argument in typing.get_args(annotation) for member in _unwrap(argument)]
    return [annotation]


def _sequence_item_type(candidates: list[Any]) -> Any:
    for candidate in candidates:
        if typing.get_origin(candidate) in SEQUENCE_ORIGINS:
            arguments = [argument for argument in typing.get_args(candidate) if argument is not Ellipsis]
            # NOTE: a tuple of several types (tuple[int, Model]) is resolved by its first type only.
            return arguments[0] if arguments else None
    return None


def _mapping_value_type(candidates: list[Any]) -> Any:
    for candidate in candidates:
        if typing.get_origin(candidate) in MAPPING_ORIGINS:
            arguments = typing.get_args(candidate)
            return arguments[1] if len(arguments) == 2 else None
    return None


class Declarations:
    """Lines of the model classes, and of their fields, that the recipe file defines."""

    def __init__(self, path: Path, module_name: str):
        self._module_name = module_name
        try:
            self._tree: ast.Module | None = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            self._tree = None

    def class_line(self, model: type[BaseModel]) -> int | None:
        node = self._class_node(model)
        return None if node is None else node.lineno

    def field_line(self, model: type[BaseModel], name: str) -> int | None:
        """Return the line that declares ``name``, in ``model`` or the nearest recipe base class."""
        for klass in model.__mro__:
            if not _is_model(klass) or klass is BaseModel:
                continue
            node = self._class_node(klass)
            if node is None:
                continue
            for statement in node.body:
                if (
                    isinstance(statement, ast.AnnAssign)
                    and isinstance(statement.target, ast.Name)
                    and statement.target.id == name
                ):
                    return statement.lineno
        return None

    def _class_node(self, model: type) -> ast.ClassDef | None:
        if self._tree is None or model.__module__ != self._module_name:
            return None
        # A class nested in another class is found by its qualified name ("Config.Optimizer").
        # A class defined inside a function falls back to the first class of that name.
        parts = model.__qualname__.split(".")
        if "<locals>" not in parts:
            body: list[ast.stmt] = self._tree.body
            node: ast.ClassDef | None = None
            for part in parts:
                node = next(
                    (child for child in body if isinstance(child, ast.ClassDef) and child.name == part), None
                )
                if node is None:
                    break
                body = node.body
            if node is not None:
                return node
        for candidate in ast.walk(self._tree):
            if isinstance(candidate, ast.ClassDef) and candidate.name == model.__name__:
                return candidate
        return None
