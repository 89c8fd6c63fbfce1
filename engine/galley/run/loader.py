"""Loading a recipe file as a module and finding its ``@recipe_main`` entry point.

Every way a recipe can fail to load becomes a ``LoadFailure`` that points at the recipe's
line and gives the fix: a syntax error, a bad import, the one-argument
``Annotated[...]`` that Python rejects at class creation, an exception at import time, a
missing or doubled entry point, or entry-point parameters the runner cannot fill.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import re
import sys
import traceback
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from galley.run.failures import LoadFailure, deepest_line_in, describe_exception, traceback_from

# Python 3.11's message for Annotated[...] with one argument.
ANNOTATED_ONE_ARGUMENT = "Annotated[...] should be used with at least two arguments"

CONTEXT_PARAMETER_NAMES = ("ctx", "context")


@dataclass
class Recipe:
    path: Path
    display: str  # the path as the person typed it, used in error lines
    module: ModuleType
    entry: Any
    entry_line: int
    config_class: type[BaseModel] | None
    config_parameter: str | None
    context_parameter: str | None

    def entry_arguments(self, config: BaseModel | None, context: Any) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if self.config_parameter is not None:
            arguments[self.config_parameter] = config
        if self.context_parameter is not None:
            arguments[self.context_parameter] = context
        return arguments


def load_recipe(path: str | Path) -> Recipe:
    """Import the recipe at ``path`` and return it with its entry point; raise LoadFailure."""
    display = str(path)
    file = Path(path)
    if not file.is_file():
        raise LoadFailure(display, 1, f"recipe file not found: {display}; pass the path of a .py file")
    module = _import_file(file, display)
    entry = _find_entry(module, file, display)
    entry_line = _definition_line(entry)
    config_parameter, config_class, context_parameter = _entry_parameters(entry, display, entry_line)
    return Recipe(file, display, module, entry, entry_line, config_class, config_parameter, context_parameter)


# -- importing ----------------------------------------------------------------------------


def _module_name(file: Path) -> str:
    stem = re.sub(r"\W", "_", file.stem)
    return f"galley_recipe_{stem}"


def _import_file(file: Path, display: str) -> ModuleType:
    name = _module_name(file)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise LoadFailure(display, 1, f"cannot load {display} as a Python module; give the recipe a .py name")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would, so that pydantic and dataclasses can
    # resolve the recipe's own names. The recipe's folder goes on sys.path for its helpers.
    sys.modules[name] = module
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        sys.modules.pop(name, None)
        raise _syntax_failure(error, display) from None
    except ImportError as error:
        sys.modules.pop(name, None)
        raise _import_failure(error, file, display) from None
    except TypeError as error:
        sys.modules.pop(name, None)
        if ANNOTATED_ONE_ARGUMENT in str(error):
            raise _annotated_failure(error, file, display) from None
        raise _exception_failure(error, file, display) from None
    except Exception as error:
        sys.modules.pop(name, None)
        raise _exception_failure(error, file, display) from None
    return module


def _syntax_failure(error: SyntaxError, display: str) -> LoadFailure:
    details = [line.rstrip("\n") for line in traceback.format_exception_only(type(error), error)]
    file = display if error.filename in (None, "<unknown>") else _relative(error.filename, display)
    kind = type(error).__name__
    message = f"{kind}: {error.msg}; fix the line shown above"
    return LoadFailure(file, error.lineno or 1, message, details)


def _relative(filename: str, display: str) -> str:
    """Show the recipe itself under the name the person typed, other files by their path."""
    try:
        if Path(filename).resolve() == Path(display).resolve():
            return display
    except OSError:
        pass
    return filename


def _import_failure(error: ImportError, file: Path, display: str) -> LoadFailure:
    line = deepest_line_in(error.__traceback__, str(file)) or 1
    if isinstance(error, ModuleNotFoundError):
        message = _missing_module_message(error.name or "?")
    else:
        message = _missing_name_message(error)
    return LoadFailure(display, line, message, traceback_from(error, file))


def _missing_module_message(module: str) -> str:
    root = module.split(".")[0]
    if root in ("galley", "adaptive_harmony"):
        return (
            f"no module named {module!r}; the recipe SDK is {root} (threads, client, models) and "
            f"{root}.runtime (recipe_main, RecipeContext, InputConfig, AdaptiveModel, JobNotifier)"
        )
    return (
        f"no module named {module!r}: it is not installed in the recipe runner's Python "
        f"({sys.executable}); install it there or remove the import"
    )


def _missing_name_message(error: ImportError) -> str:
    module = error.name or ""
    match = re.search(r"cannot import name '([^']+)'", str(error))
    if match is None:
        return describe_exception(error)
    name = match.group(1)
    root = module.split(".")[0]
    if root not in ("galley", "adaptive_harmony"):
        return f"cannot import {name!r} from {module!r}: {error}"
    exports = _sdk_exports(root)
    for candidate, names in exports.items():
        if name in names and candidate != module:
            return f"cannot import {name!r} from {module!r}; it is in {candidate}: write `from {candidate} import {name}`"
    everything = {item: candidate for candidate, names in exports.items() for item in names}
    close = difflib.get_close_matches(name, list(everything), n=1)
    if close:
        return f"cannot import {name!r} from {module!r}; did you mean `from {everything[close[0]]} import {close[0]}`?"
    return f"cannot import {name!r} from {module!r}; the SDK has no such name"


def _sdk_exports(root: str) -> dict[str, list[str]]:
    import galley
    import galley.runtime

    return {root: list(galley.__all__), f"{root}.runtime": list(galley.runtime.__all__)}


def _annotated_failure(error: TypeError, file: Path, display: str) -> LoadFailure:
    line = deepest_line_in(error.__traceback__, str(file)) or 1
    source = file.read_text(encoding="utf-8", errors="replace")
    single = _single_argument_annotated(source)
    inner = dict(single).get(line) or "T"
    details = [
        f"{display}:{number}: Annotated[{text}] has a type but no annotation" for number, text in single
    ]
    message = (
        f"Annotated[{inner}] needs a type and at least one annotation; "
        f'write Annotated[{inner}, Field(description="...")] or just {inner}'
    )
    return LoadFailure(display, line, message, details)


def _single_argument_annotated(source: str) -> list[tuple[int, str]]:
    """Return (line, inner text) of each ``Annotated[X]`` written with one argument."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Subscript) or isinstance(node.slice, ast.Tuple):
            continue
        target = node.value
        name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
        if name == "Annotated":
            found.append((node.lineno, ast.get_source_segment(source, node.slice) or "T"))
    return sorted(found)


def _exception_failure(error: BaseException, file: Path, display: str) -> LoadFailure:
    line = deepest_line_in(error.__traceback__, str(file)) or 1
    message = f"loading the recipe raised {describe_exception(error)}"
    return LoadFailure(display, line, message, traceback_from(error, file))


# -- the entry point ----------------------------------------------------------------------


def _find_entry(module: ModuleType, file: Path, display: str) -> Any:
    from galley.runtime import registered_entry_points

    entries = [function for function in registered_entry_points if function.__module__ == module.__name__]
    if not entries:
        raise LoadFailure(
            display,
            1,
            "no @recipe_main function found; decorate the recipe's entry point: "
            "@recipe_main above `async def main(ctx: RecipeContext)`",
        )
    if len(entries) > 1:
        places = ", ".join(f"{entry.__name__} at line {_definition_line(entry)}" for entry in entries)
        raise LoadFailure(
            display,
            _definition_line(entries[1]),
            f"found {len(entries)} @recipe_main functions ({places}); keep one entry point",
        )
    return entries[0]


def _definition_line(function: Any) -> int:
    try:
        return inspect.getsourcelines(function)[1]
    except (OSError, TypeError):
        return function.__code__.co_firstlineno


def _entry_parameters(
    entry: Any, display: str, line: int
) -> tuple[str | None, type[BaseModel] | None, str | None]:
    """Return (config parameter, config class, context parameter) of the entry point."""
    from galley.runtime import RecipeContext

    try:
        hints = typing.get_type_hints(entry)
    except Exception as error:
        raise LoadFailure(
            display,
            line,
            f"cannot resolve the type annotations of {entry.__name__}: {describe_exception(error)}",
        ) from None
    config_parameter = config_class = context_parameter = None
    for parameter in inspect.signature(entry).parameters.values():
        hint = hints.get(parameter.name)
        if hint is RecipeContext or (hint is None and parameter.name in CONTEXT_PARAMETER_NAMES):
            context_parameter = parameter.name
        elif inspect.isclass(hint) and issubclass(hint, BaseModel):
            if config_class is not None:
                raise LoadFailure(
                    display,
                    line,
                    f"{entry.__name__} takes two config parameters; take one InputConfig subclass",
                )
            config_parameter, config_class = parameter.name, hint
        elif parameter.default is inspect.Parameter.empty:
            raise LoadFailure(
                display,
                line,
                f"{entry.__name__}'s parameter {parameter.name!r} cannot be filled by the runner; "
                f"annotate it as an InputConfig subclass (the config) or RecipeContext (the context)",
            )
    return config_parameter, config_class, context_parameter
