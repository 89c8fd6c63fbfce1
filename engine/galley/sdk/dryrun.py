"""Printing the engine's spawn plans under ``galley.run --dry-run``.

The engine's ``plan`` method returns the resolved spawn parameters, the chosen devices and
the planner's ``plan``: bytes per component for the largest rank, the total, and a note per
component saying whether its number is exact or an estimate. It also returns each rank's
available bytes and the bytes that earlier spawns of the same dry run hold (``held``),
because the engine checks every plan against the devices minus those earlier plans.
"""

from __future__ import annotations

from typing import Any

GIB = 1024**3

DRY_RUN_STOP_MESSAGE = "dry run: stopped before the first compute call"


def format_gib(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value / GIB:.2f} GiB"


def format_plan(result: dict[str, Any]) -> str:
    """Render a ``plan`` result: one line for the spawn, then planned GiB per component."""
    lines = [_spawn_line(result)]
    plan = result.get("plan")
    if isinstance(plan, dict) and isinstance(plan.get("components"), dict):
        lines.extend(_component_lines(plan))
        lines.extend(_fit_lines(result))
    else:
        lines.append("  no memory plan for this model")
    return "\n".join(lines)


def _spawn_line(result: dict[str, Any]) -> str:
    settings = [f"tp={result.get('tp')}"]
    if result.get("kind") == "train":
        settings.append(f"max_batch_size={result.get('max_batch_size')}")
        settings.append("LoRA adapter" if result.get("adapter") else "full weights")
    else:
        settings.append(f"kv_cache_len={result.get('kv_cache_len')}")
    if result.get("scalar"):
        settings.append("value head")
    devices = ", ".join(result.get("devices") or []) or "no device"
    return (
        f"dry run: {result.get('kind')} spawn {result.get('name')!r} of {result.get('model_key')} "
        f"({', '.join(settings)}) on {devices}"
    )


def _component_lines(plan: dict[str, Any]) -> list[str]:
    ranks = len(plan.get("ranks") or [1])
    scope = f"largest of {ranks} ranks" if ranks > 1 else "one rank"
    dtype = plan.get("weight_dtype", "model dtype")
    lines = [f"  planned memory ({scope}, {dtype} weights):"]

    components: dict[str, Any] = plan["components"]
    notes: dict[str, Any] = plan.get("notes") or {}
    width = max(len(name) for name in [*components, "total"])
    for name, size in components.items():
        calibration = (notes.get(name) or {}).get("calibration")
        suffix = f"  ({calibration})" if calibration else ""
        lines.append(f"    {name:<{width}}  {format_gib(size):>11}{suffix}")
    lines.append(f"    {'total':<{width}}  {format_gib(plan.get('total')):>11}")
    return lines


def _fit_lines(result: dict[str, Any]) -> list[str]:
    """Render each rank's planned bytes against its device's available memory, and the holdings."""
    lines = []
    for rank in result.get("ranks") or []:
        lines.append(
            f"  rank {rank.get('rank')}: {format_gib(rank.get('planned_bytes'))} of "
            f"{format_gib(rank.get('available_bytes'))} available on {rank.get('device')}"
        )
    held = result.get("held") or []
    if held:
        spawns = ", ".join(
            f"{holding.get('spawn')!r} {format_gib(holding.get('bytes'))} on {holding.get('device')}"
            for holding in held
        )
        lines.append(f"  earlier spawns of this dry run hold: {spawns}")
    return lines


def print_plan(result: Any) -> None:
    text = format_plan(result) if isinstance(result, dict) else f"dry run: plan {result!r}"
    print(text, flush=True)


def print_refusal(name: str, kind: str, refusal: Exception) -> None:
    """Print a spawn the engine would refuse, with its reason (components and what would fit)."""
    print(f"dry run: {kind} spawn {name!r} would be REFUSED", flush=True)
    for line in str(refusal).splitlines():
        print(f"  {line}", flush=True)


def refusal_summary(refused: list[str], planned: int) -> str:
    names = ", ".join(repr(name) for name in refused)
    return f"dry run: {len(refused)} of {planned} spawns would be refused ({names})"
