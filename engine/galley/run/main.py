"""The recipe runner: ``python -m galley.run RECIPE [--config FILE] [--schema] [--check] [--dry-run]``.

Exit codes (docs/contracts.md):
- 0: the recipe returned, or a dry run stopped at its first compute call, or ``--check``
  loaded the recipe and validated its config.
- 1: the recipe raised. The traceback is printed first.
- 2: the recipe, its config or the engine connection could not be set up, so nothing of
  the recipe ran.
- 143: SIGTERM cancelled the recipe (130 for Ctrl-C).
Every failure ends with the line ``error: FILE:LINE: message``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from galley.lifecycle import exit_with_parent
from galley.run.configs import build_config, config_schema, has_model_fields
from galley.run.failures import (
    LoadFailure,
    deepest_line_in,
    deepest_line_in_stack,
    describe_exception,
    error_line,
    report,
    traceback_from,
)
from galley.run.loader import Recipe, load_recipe
from galley.run.output import ordered_output
from galley.run.registry import RegistryUnavailable, fetch_model_keys
from galley.runtime import RecipeContext
from galley.sdk.client import ENGINE_TOKEN_ENV, ENGINE_URL_ENV, get_client
from galley.sdk.dryrun import DRY_RUN_STOP_MESSAGE, refusal_summary
from galley.sdk.errors import DryRunStop, EngineConnectionError
from galley.sdk.events import EventSink, set_default_sink, sink_from_environment

log = logging.getLogger("galley.run")

EXIT_OK = 0
EXIT_RECIPE_RAISED = 1
EXIT_NOT_LOADED = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

# WebSocket upgrade headers the engine reads for the lineage of saved models.
RUN_ID_HEADER = "X-Galley-Run-Id"
RECIPE_HASH_HEADER = "X-Galley-Recipe-Hash"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m galley.run",
        description="Run a Galley recipe: validate its config, connect to the engine, call its @recipe_main.",
    )
    parser.add_argument("recipe", help="path of the recipe's .py file")
    parser.add_argument(
        "--config", metavar="FILE", help="JSON file with the recipe's config (default: field defaults)"
    )
    parser.add_argument(
        "--schema", action="store_true", help="print the config's JSON Schema and exit; contacts no engine"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="load the recipe and validate its config, then exit without contacting the engine",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="plan each spawn instead of starting it, print the plans, and stop at the first compute call",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_with_parent()
    try:
        events = _event_sink(args.recipe)
    except LoadFailure as failure:
        report(failure)
        return EXIT_NOT_LOADED
    # From here on, stdout and stderr reach the control plane in the order they were written,
    # including what the recipe prints while it is imported.
    with ordered_output(events) as ordered_events:
        _configure_logging()
        return _load_and_run(args, ordered_events)


def _load_and_run(args: argparse.Namespace, events: EventSink) -> int:
    try:
        recipe = load_recipe(args.recipe)
        if args.schema:
            print(json.dumps(config_schema(recipe), indent=2))
            return EXIT_OK
        config = build_config(recipe, args.config, _known_model_keys(recipe))
        if args.check:
            return EXIT_OK
    except LoadFailure as failure:
        report(failure)
        return EXIT_NOT_LOADED
    set_default_sink(events)
    try:
        return asyncio.run(_run(recipe, config, events, dry_run=args.dry_run))
    except KeyboardInterrupt:
        print(error_line(recipe.display, recipe.entry_line, "interrupted (Ctrl-C)"), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        set_default_sink(None)


class _CurrentStderrHandler(logging.StreamHandler):
    """A StreamHandler that writes to whatever ``sys.stderr`` is when a record is logged."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_logging() -> None:
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    galley_log = logging.getLogger("galley")
    if not galley_log.handlers:
        galley_log.addHandler(handler)
        galley_log.setLevel(logging.INFO)
        galley_log.propagate = False


def _known_model_keys(recipe: Recipe) -> list[str] | None:
    if not has_model_fields(recipe):
        return None
    try:
        return fetch_model_keys()
    except RegistryUnavailable as error:
        raise LoadFailure(
            recipe.display, recipe.entry_line, f"cannot check the config's model keys: {error}"
        ) from None


def _event_sink(recipe_display: str) -> EventSink:
    try:
        return sink_from_environment()
    except ValueError as error:
        raise LoadFailure(recipe_display, 1, str(error)) from None


def _run_id() -> str:
    return os.environ.get("GALLEY_RUN_ID") or f"local-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def _run_dir() -> Path | None:
    """Return ``$GALLEY_RUN_DIR``, created if missing; None lets the context make a temporary one."""
    configured = os.environ.get("GALLEY_RUN_DIR")
    if not configured:
        return None
    run_dir = Path(configured)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


async def _run(recipe: Recipe, config: BaseModel | None, events: EventSink, *, dry_run: bool) -> int:
    if not os.environ.get(ENGINE_URL_ENV):
        message = (
            f"{ENGINE_URL_ENV} is not set, so the recipe has no engine; run it with `galley run {recipe.display}`, "
            f"or start `python -m galley.engine` and set {ENGINE_URL_ENV} and {ENGINE_TOKEN_ENV}"
        )
        report(LoadFailure(recipe.display, recipe.entry_line, message))
        return EXIT_NOT_LOADED
    run_id = _run_id()
    # The engine records these as the lineage of models the recipe saves.
    headers = {
        RUN_ID_HEADER: run_id,
        RECIPE_HASH_HEADER: hashlib.sha256(recipe.path.read_bytes()).hexdigest(),
    }
    try:
        client = await get_client(dry_run=dry_run, events=events, headers=headers)
    except EngineConnectionError as error:
        report(LoadFailure(recipe.display, recipe.entry_line, str(error)))
        return EXIT_NOT_LOADED
    log.info("run %s: connected to the engine at %s", run_id, client.url)
    context = RecipeContext(client, run_id, _run_dir(), config=config, events=events)
    try:
        code, final_line = await _call_entry(recipe, config, context, dry_run=dry_run)
    finally:
        await client.close()
        log.info("run %s: closed the engine session", run_id)
    # Printed after the session closed, so that it is the last line on stderr.
    if final_line:
        print(final_line, file=sys.stderr, flush=True)
    return code


async def _call_entry(
    recipe: Recipe, config: BaseModel | None, context: RecipeContext, *, dry_run: bool
) -> tuple[int, str | None]:
    """Run the entry point; return the exit code and the final error line, if it failed."""
    task = asyncio.ensure_future(recipe.entry(**recipe.entry_arguments(config, context)))
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop = asyncio.get_running_loop()
    # The run manager cancels a run with SIGTERM; cancelling the task lets the recipe's
    # finally blocks run and the client close its session.
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        await task
    except DryRunStop as stop:
        print(f"{DRY_RUN_STOP_MESSAGE} ({stop})", flush=True)
        return _dry_run_outcome(recipe, context)
    except asyncio.CancelledError:
        if not terminated:
            raise
        return EXIT_TERMINATED, error_line(recipe.display, recipe.entry_line, "cancelled by SIGTERM")
    except Exception as error:
        print("\n".join(traceback_from(error, recipe.path)), file=sys.stderr, flush=True)
        line = deepest_line_in(error.__traceback__, str(recipe.path)) or recipe.entry_line
        return EXIT_RECIPE_RAISED, error_line(recipe.display, line, describe_exception(error))
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    if dry_run:
        print("dry run: the recipe finished without a compute call", flush=True)
        return _dry_run_outcome(recipe, context)
    return EXIT_OK, None


def _dry_run_outcome(recipe: Recipe, context: RecipeContext) -> tuple[int, str | None]:
    """Return the exit code of a dry run: 0 when every planned spawn fits, else 1 as the real run would fail."""
    client = context.client
    if not client.dry_run_refused:
        return EXIT_OK, None
    summary = refusal_summary(client.dry_run_refused, client.dry_run_planned)
    # Point at the first refused spawn's call in the recipe. A spawn coroutine passed straight
    # to asyncio.gather or create_task has no recipe frame on its stack, so its line falls
    # back to the entry point.
    stacks = client.dry_run_refusal_stacks
    line = deepest_line_in_stack(stacks[0], str(recipe.path)) if stacks else None
    return EXIT_RECIPE_RAISED, error_line(recipe.display, line or recipe.entry_line, summary)
