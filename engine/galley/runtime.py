"""What a recipe imports to run: ``recipe_main``, ``RecipeContext`` and the config types.

    from galley.runtime import recipe_main, RecipeContext   # or adaptive_harmony.runtime

    @recipe_main
    async def main(config: MyConfig, ctx: RecipeContext): ...

``python -m galley.run recipe.py --config cfg.json`` validates the config and calls the entry
point. ``python recipe.py --config cfg.json`` does the same: when the decorated function
belongs to ``__main__``, the decorator hands the file to the runner, which loads it again
as a module and runs it. So top-level code above ``@recipe_main`` runs twice that way, and
the runner's exit code ends the process.

NOTE: a recipe that fails before its ``@recipe_main`` line runs (a syntax error, a
one-argument ``Annotated[...]``) shows Python's own error under ``python recipe.py``.
``python -m galley.run`` explains those with the line and the fix.
"""

from __future__ import annotations

import inspect
import math
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from galley.sdk.client import HarmonyClient
from galley.sdk.config import AdaptiveModel, InputConfig
from galley.sdk.events import EventSink, default_sink
from galley.sdk.notifier import JobArtifact, JobNotifier, StageNotifier

__all__ = [
    "AdaptiveModel",
    "InputConfig",
    "JobArtifact",
    "JobNotifier",
    "RecipeContext",
    "StageNotifier",
    "recipe_main",
]

RecipeFunction = TypeVar("RecipeFunction", bound=Callable[..., Coroutine[Any, Any, Any]])

# Every function decorated with @recipe_main, in decoration order; the runner picks the
# ones defined in the recipe module it loaded.
registered_entry_points: list[Callable[..., Any]] = []


def recipe_main(function: RecipeFunction) -> RecipeFunction:
    """Mark the recipe's entry point: ``async def main(ctx)`` or ``async def main(config, ctx)``."""
    if not inspect.iscoroutinefunction(function):
        raise TypeError(
            f"@recipe_main needs an async function, and {function.__qualname__} is not one; "
            f"write `async def {function.__name__}(...)`"
        )
    registered_entry_points.append(function)
    if function.__module__ == "__main__":
        _run_as_script(function)
    return function


def _run_as_script(function: Callable[..., Any]) -> None:
    """Run the recipe file through the runner, as ``python -m galley.run FILE ARGS`` would."""
    from galley.run.main import main as run_main

    recipe_file = getattr(sys.modules["__main__"], "__file__", None)
    if recipe_file is None:
        raise RuntimeError(
            f"@recipe_main on {function.__qualname__} cannot find the recipe file of __main__; "
            f"run it with `python -m galley.run FILE`"
        )
    # sys.argv[0] is the path as typed, which reads better in error lines than __file__.
    typed = (
        sys.argv[0]
        if sys.argv and Path(sys.argv[0]).resolve() == Path(recipe_file).resolve()
        else recipe_file
    )
    raise SystemExit(run_main([typed, *sys.argv[1:]]))


class RecipeContext:
    """Context of a running recipe: the engine session, progress reporting and run identity.

    Attributes:
        client: the engine session (a connected ``HarmonyClient``).
        job: the ``JobNotifier`` for stages, progress, artifacts and errors.
        run_id: the run's id (``$GALLEY_RUN_ID``, or a local id outside the workbench).
        run_dir: a directory for the run's files: ``$GALLEY_RUN_DIR`` under the workbench,
            else a temporary directory made on first use.
        config: the validated config, or None for a recipe without one.
    """

    def __init__(
        self,
        client: HarmonyClient,
        run_id: str,
        run_dir: Path | None = None,
        *,
        job: JobNotifier | None = None,
        config: BaseModel | None = None,
        events: EventSink | None = None,
    ):
        self.client = client
        self.run_id = run_id
        self._run_dir = None if run_dir is None else Path(run_dir)
        self.config = config
        self._events = events
        self.job = job or JobNotifier(events)
        self._metric_steps: dict[str, int] = {}

    @property
    def run_dir(self) -> Path:
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix=f"galley-{self.run_id}-"))
            print(f"galley: run {self.run_id}: files go to {self._run_dir}", file=sys.stderr)
        return self._run_dir

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record ``value`` of the metric ``name`` at ``step``, charted in the workbench.

        Without ``step``, the step is one past the last step logged for this name (0 first).
        A NaN or infinite value is not recorded, and a warning line goes to stderr, because
        run events carry finite numbers only.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty string, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"metric {name!r}: value must be a number, got {type(value).__name__}: {value!r}")
        if step is None:
            step = self._metric_steps.get(name, -1) + 1
        elif isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"metric {name!r}: step must be an int >= 0 or None, got {step!r}")
        self._metric_steps[name] = step
        if not math.isfinite(value):
            print(f"galley: metric {name!r} at step {step} is {value}; not recorded", file=sys.stderr)
            return
        (self._events or default_sink()).emit(
            {"type": "metric", "name": name, "value": float(value), "step": step}
        )
