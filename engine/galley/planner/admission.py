"""Admission and placement: choose a device per rank, admit only when every rank's plan fits.

A device's available memory is its free bytes minus ``pending`` (bytes of admitted spawns
that are still loading there and so do not show in the free count yet) minus ``held``
(earlier spawns of the same dry run, which plan but never load). Without pinned devices,
ranks go to the devices with the most available memory. A spawn that does not fit raises
SpawnRefused. Its message names the spawn, lists every component in GiB, the total against
the free memory, the earlier spawns that hold memory on the device, and what would fit
instead (after dealloc() of some of those earlier spawns where only that makes it fit), and
``error.data`` carries the same as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..engine.errors import InvalidRequest, SpawnRefused
from .plan import Plan
from .units import format_gib


class DeviceView(Protocol):
    """Device fields that admission reads (``galley.protocol.DeviceInfo`` has them)."""

    @property
    def id(self) -> str: ...
    @property
    def free_bytes(self) -> int: ...
    @property
    def total_bytes(self) -> int: ...


@dataclass(frozen=True)
class DeviceCapacity:
    id: str
    total_bytes: int
    free_bytes: int
    kind: str = "virtual"


@dataclass(frozen=True)
class Holding:
    """Bytes that an earlier spawn of the same dry run planned on a device."""

    spawn: str
    device: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"spawn": self.spawn, "device": self.device, "bytes": self.bytes}


@dataclass(frozen=True)
class RankPlacement:
    rank: int
    device: str
    planned_bytes: int
    available_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "device": self.device,
            "planned_bytes": self.planned_bytes,
            "available_bytes": self.available_bytes,
        }


@dataclass(frozen=True)
class Placement:
    plan: Plan
    ranks: tuple[RankPlacement, ...]

    @property
    def devices(self) -> list[str]:
        return [rank.device for rank in self.ranks]

    def bytes_by_device(self) -> dict[str, int]:
        """Return the planned bytes per device id, to reserve while the spawn loads."""
        return {rank.device: rank.planned_bytes for rank in self.ranks}

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "ranks": [rank.to_dict() for rank in self.ranks],
            "plan": self.plan.to_dict(),
        }


def admit(
    plan: Plan,
    devices: Sequence[DeviceView],
    pinned: Sequence[str] | None = None,
    *,
    pending: Mapping[str, int] | None = None,
    held: Sequence[Holding] = (),
) -> Placement:
    """Place each rank of ``plan`` on its own device, or raise SpawnRefused.

    ``pinned`` lists one device id per rank, in rank order. ``held`` lists what earlier
    spawns of the same dry run planned, which is subtracted like ``pending``. Raises
    InvalidRequest for pinned ids that are unknown, repeated or not one per rank.
    """
    reserved = _reserved_bytes(pending or {}, held)
    chosen = _choose_devices(plan, devices, pinned, reserved)
    ranks = tuple(
        RankPlacement(rank.rank, device.id, rank.total, _available(device, reserved))
        for rank, device in zip(plan.ranks, chosen, strict=True)
    )
    if all(rank.planned_bytes <= rank.available_bytes for rank in ranks):
        return Placement(plan=plan, ranks=ranks)
    advice = _advice(plan, devices, pinned, pending or {}, held)
    raise SpawnRefused(
        _refusal_message(plan, ranks, advice, devices, held), _refusal_data(plan, ranks, advice, held)
    )


def _reserved_bytes(pending: Mapping[str, int], held: Sequence[Holding]) -> dict[str, int]:
    """Return the bytes to subtract from each device's free bytes: pending plus held."""
    reserved = dict(pending)
    for holding in held:
        reserved[holding.device] = reserved.get(holding.device, 0) + holding.bytes
    return reserved


def _available(device: DeviceView, reserved: Mapping[str, int]) -> int:
    return device.free_bytes - reserved.get(device.id, 0)


def _choose_devices(
    plan: Plan, devices: Sequence[DeviceView], pinned: Sequence[str] | None, reserved: Mapping[str, int]
) -> list[DeviceView]:
    tp = plan.inputs.tp
    if pinned is not None:
        return _pinned_devices(tp, devices, pinned)
    if tp > len(devices):
        valid = [n for n in plan.facts.valid_tp() if n <= len(devices)]
        names = ", ".join(device.id for device in devices) or "none"
        label = f" for spawn {plan.inputs.spawn_name!r}" if plan.inputs.spawn_name else ""
        raise SpawnRefused(
            f"tp={tp} needs {tp} devices but {len(devices)} are available ({names}){label}; "
            f"use tp={' or '.join(str(n) for n in valid)}, which divides {plan.facts.name}'s "
            f"{plan.facts.heads} attention heads",
            {
                "reason": "tp_exceeds_devices",
                "spawn": plan.inputs.spawn_name,
                "model": plan.facts.name,
                "tp": tp,
                "devices": [device.id for device in devices],
                "valid_tp": valid,
            },
        )
    # Most available memory first; equal devices keep their inventory order.
    ordered = sorted(devices, key=lambda device: -_available(device, reserved))
    return ordered[:tp]


def _pinned_devices(tp: int, devices: Sequence[DeviceView], pinned: Sequence[str]) -> list[DeviceView]:
    by_id = {device.id: device for device in devices}
    unknown = [device_id for device_id in pinned if device_id not in by_id]
    if unknown:
        raise InvalidRequest(
            f"pinned device {', '.join(map(repr, unknown))} not found; devices: {', '.join(by_id) or 'none'}"
        )
    if len(set(pinned)) != len(pinned):
        raise InvalidRequest(f"pinned devices {list(pinned)} repeat a device; each rank needs its own device")
    if len(pinned) != tp:
        raise InvalidRequest(f"{len(pinned)} pinned devices for tp={tp}; pin exactly one device per rank")
    return [by_id[device_id] for device_id in pinned]


def _fits(
    plan: Plan, devices: Sequence[DeviceView], pinned: Sequence[str] | None, reserved: Mapping[str, int]
) -> bool:
    try:
        chosen = _choose_devices(plan, devices, pinned, reserved)
    except (SpawnRefused, InvalidRequest):
        return False
    return all(
        rank.total <= _available(device, reserved) for rank, device in zip(plan.ranks, chosen, strict=True)
    )


# ---------------------------------------------------------------------------------------
# What would fit instead


def _largest_fitting(upper: int, fits: Callable[[int], bool]) -> int | None:
    """Return the largest n in [1, upper] with fits(n), for fits that stops holding as n grows."""
    if upper < 1 or not fits(1):
        return None
    low, high = 1, upper
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _advice(
    plan: Plan,
    devices: Sequence[DeviceView],
    pinned: Sequence[str] | None,
    pending: Mapping[str, int],
    held: Sequence[Holding],
) -> dict[str, Any]:
    """Work out each alternative that would fit, freeing earlier dry-run spawns where needed.

    Every alternative is first tried against the memory that earlier spawns of the dry run
    hold. One that does not fit there is tried again after dealloc() of the fewest of those
    spawns, largest first, and ``advice["needs_dealloc"]`` maps its key to the spawns freed
    and their bytes. A smaller kv_cache_len or max_batch_size is not offered after a
    dealloc() that lets the requested size fit, because ``advice["dealloc"]`` covers that.
    """
    inputs = plan.inputs
    scenarios = _dealloc_scenarios(pending, held)
    advice: dict[str, Any] = {}
    needs_dealloc: dict[str, dict[str, Any]] = {}

    def choose(
        key: str,
        compute: Callable[[Mapping[str, int]], Any],
        usable: Callable[[Any], bool],
        requested: Any = None,
    ) -> None:
        baseline = compute(scenarios[0].reserved)
        advice[key] = baseline
        if usable(baseline):
            return
        for scenario in scenarios[1:]:
            result = compute(scenario.reserved)
            if requested is not None and result == requested:
                return
            if usable(result):
                advice[key] = result
                needs_dealloc[key] = {"spawns": scenario.spawns, "bytes": scenario.freed_bytes}
                return

    def fits_with(reserved: Mapping[str, int]) -> Callable[[Plan], bool]:
        return lambda candidate: _fits(candidate, devices, pinned, reserved)

    def found(result: Any) -> bool:
        return result is not None

    if inputs.kind == "inference":
        assert inputs.kv_cache_len is not None
        kv_cache_len = inputs.kv_cache_len
        # The search includes the requested size: it does not fit beside every earlier spawn
        # (admit() refused it), but it may after a dealloc().
        choose(
            "max_kv_cache_len",
            lambda reserved: _largest_fitting(
                kv_cache_len, lambda n: fits_with(reserved)(plan.replan(kv_cache_len=n))
            ),
            found,
            requested=kv_cache_len,
        )
    else:
        assert inputs.max_batch_size is not None
        max_batch_size = inputs.max_batch_size
        choose(
            "max_batch_size",
            lambda reserved: _largest_fitting(
                max_batch_size, lambda n: fits_with(reserved)(plan.replan(max_batch_size=n))
            ),
            found,
            requested=max_batch_size,
        )
        if not inputs.adapter:
            choose(
                "adapter",
                lambda reserved: _adapter_advice(plan, fits_with(reserved)),
                lambda result: result["fits"] or result["max_batch_size"] is not None,
            )
        choose(
            "inference",
            lambda reserved: _inference_advice(plan, fits_with(reserved)),
            lambda result: result["fits"],
        )
    choose("tp", lambda reserved: _tp_advice(plan, devices, reserved), lambda result: result["fits"])
    choose(
        "device",
        lambda reserved: _device_advice(plan, devices, pinned, reserved),
        # Only a pinned spawn is advised to move, because an unpinned one already got the
        # devices with the most free memory.
        lambda result: bool(pinned) and len(result["fitting_devices"]) >= inputs.tp,
    )
    if held:
        advice["dealloc"] = _dealloc_advice(plan, devices, pinned, scenarios)
    advice["needs_dealloc"] = needs_dealloc
    return advice


@dataclass(frozen=True)
class _DeallocScenario:
    """Reserved bytes per device after the recipe's dealloc() of ``spawns``."""

    spawns: list[str]
    freed_bytes: int
    reserved: dict[str, int]


def _dealloc_scenarios(pending: Mapping[str, int], held: Sequence[Holding]) -> list[_DeallocScenario]:
    """List the reservations after dealloc() of none, then 1, 2, ... earlier spawns, largest first."""
    bytes_by_spawn: dict[str, int] = {}
    for holding in held:
        bytes_by_spawn[holding.spawn] = bytes_by_spawn.get(holding.spawn, 0) + holding.bytes
    order = sorted(bytes_by_spawn, key=lambda spawn: -bytes_by_spawn[spawn])
    scenarios = []
    for count in range(len(order) + 1):
        released = order[:count]
        kept = [holding for holding in held if holding.spawn not in released]
        freed = sum(bytes_by_spawn[spawn] for spawn in released)
        scenarios.append(_DeallocScenario(released, freed, _reserved_bytes(pending, kept)))
    return scenarios


def _dealloc_advice(
    plan: Plan,
    devices: Sequence[DeviceView],
    pinned: Sequence[str] | None,
    scenarios: Sequence[_DeallocScenario],
) -> dict[str, Any]:
    """Find the fewest earlier spawns, largest first, whose dealloc() before this spawn makes it fit."""
    for scenario in scenarios[1:]:
        if _fits(plan, devices, pinned, scenario.reserved):
            return {"fits": True, "spawns": scenario.spawns, "bytes": scenario.freed_bytes}
    return {"fits": False, "spawns": scenarios[-1].spawns, "bytes": scenarios[-1].freed_bytes}


def _adapter_advice(plan: Plan, fits: Callable[[Plan], bool]) -> dict[str, Any]:
    adapter_plan = plan.replan(adapter=True)
    if fits(adapter_plan):
        return {"fits": True, "max_batch_size": plan.inputs.max_batch_size, "total_bytes": adapter_plan.total}
    largest = _largest_fitting(
        (plan.inputs.max_batch_size or 1) - 1, lambda n: fits(plan.replan(adapter=True, max_batch_size=n))
    )
    return {"fits": False, "max_batch_size": largest, "total_bytes": adapter_plan.total}


def _inference_advice(plan: Plan, fits: Callable[[Plan], bool]) -> dict[str, Any]:
    facts = plan.facts
    upper = plan.inputs.kv_cache_len or facts.max_position_embeddings or 131072
    largest = _largest_fitting(
        upper, lambda n: fits(plan.replan(kind="inference", kv_cache_len=n, max_batch_size=None))
    )
    return {"fits": largest is not None, "max_kv_cache_len": largest, "requested_kv_cache_len": upper}


def _tp_advice(plan: Plan, devices: Sequence[DeviceView], reserved: Mapping[str, int]) -> dict[str, Any]:
    """Find the smallest higher tp that fits on the most available devices (pins dropped)."""
    tp = plan.inputs.tp
    higher = [n for n in plan.facts.valid_tp() if n > tp]
    possible = [n for n in higher if n <= len(devices)]
    for candidate in possible:
        candidate_plan = plan.replan(tp=candidate)
        if _fits(candidate_plan, devices, None, reserved):
            return {"fits": True, "tp": candidate, "total_bytes_per_rank": candidate_plan.total}
    return {"fits": False, "tp": None, "tried": possible, "device_count": len(devices), "higher_tp": higher}


def _device_advice(
    plan: Plan, devices: Sequence[DeviceView], pinned: Sequence[str] | None, reserved: Mapping[str, int]
) -> dict[str, Any]:
    """Name the devices that could take a rank of this plan, and the memory a device needs."""
    needed = plan.total
    fitting = [
        device.id
        for device in devices
        if _available(device, reserved) >= needed and device.id not in (pinned or ())
    ]
    roomiest = max(devices, key=lambda device: _available(device, reserved), default=None)
    return {
        "needed_bytes": needed,
        "pinned": list(pinned) if pinned else None,
        "fitting_devices": fitting,
        "free_bytes": {device.id: _available(device, reserved) for device in devices},
        "largest_free_device": roomiest.id if roomiest else None,
        "largest_free_bytes": _available(roomiest, reserved) if roomiest else 0,
    }


# ---------------------------------------------------------------------------------------
# Refusal message and data


def _refusal_message(
    plan: Plan,
    ranks: Sequence[RankPlacement],
    advice: Mapping[str, Any],
    devices: Sequence[DeviceView],
    held: Sequence[Holding],
) -> str:
    failing = [rank for rank in ranks if rank.planned_bytes > rank.available_bytes]
    worst = max(failing, key=lambda rank: rank.planned_bytes - rank.available_bytes)
    worst_plan = plan.ranks[worst.rank]

    lines = [f"{plan.spawn_label()} does not fit: {plan.describe()}."]
    for rank in failing:
        lines.append(
            f"Rank {rank.rank} needs {format_gib(rank.planned_bytes)} but {rank.device} has "
            f"{format_gib(rank.available_bytes)} free."
        )
    lines.extend(_held_lines(failing, devices, held))
    lines.append(f"Planned memory of rank {worst.rank} by component:")
    lines.extend("  " + line for line in plan.component_lines(worst_plan))
    lines.append(
        f"  total {format_gib(worst.planned_bytes)} against {format_gib(worst.available_bytes)} free on {worst.device}"
    )
    lines.append("What would fit:")
    lines.extend("  - " + line for line in _advice_lines(plan, advice, worst))
    return "\n".join(lines)


def _held_lines(
    failing: Sequence[RankPlacement], devices: Sequence[DeviceView], held: Sequence[Holding]
) -> list[str]:
    """Say which earlier spawns of the dry run hold memory on each failing rank's device."""
    free_by_device = {device.id: device.free_bytes for device in devices}
    lines = []
    for device_id in dict.fromkeys(rank.device for rank in failing):
        holdings = [holding for holding in held if holding.device == device_id]
        if not holdings:
            continue
        spawns = ", ".join(f"{holding.spawn!r} {format_gib(holding.bytes)}" for holding in holdings)
        total = sum(holding.bytes for holding in holdings)
        lines.append(
            f"Earlier spawns of this dry run hold {format_gib(total)} of {device_id}: {spawns} "
            f"({device_id} has {format_gib(free_by_device[device_id])} free without them)."
        )
    return lines


def _advice_lines(plan: Plan, advice: Mapping[str, Any], worst: RankPlacement) -> list[str]:
    inputs = plan.inputs
    free = f"{format_gib(worst.available_bytes)} free on {worst.device}"
    needs_dealloc: Mapping[str, Any] = advice.get("needs_dealloc", {})
    lines = []

    def add(key: str, line: str) -> None:
        freed = needs_dealloc.get(key)
        if freed:
            names = ", ".join(repr(name) for name in freed["spawns"])
            line += f", after dealloc() of {names} ({format_gib(freed['bytes'])})"
        lines.append(line)

    if "max_kv_cache_len" in advice:
        largest = advice["max_kv_cache_len"]
        fixed = sum(size for name, size in plan.ranks[worst.rank].components.items() if name != "kv_cache")
        add(
            "max_kv_cache_len",
            f"kv_cache_len={largest} (largest that fits; requested {inputs.kv_cache_len})"
            if largest
            else f"no kv_cache_len fits: weights and overhead alone take {format_gib(fixed)} of the {free}",
        )
    if "max_batch_size" in advice:
        largest = advice["max_batch_size"]
        fixed = sum(
            size
            for name, size in plan.ranks[worst.rank].components.items()
            if name not in ("activations", "attention_mask", "logits")
        )
        add(
            "max_batch_size",
            f"max_batch_size={largest} tokens (largest that fits; requested {inputs.max_batch_size})"
            if largest
            else f"no max_batch_size fits: weights, gradients, optimizer state and overhead alone take "
            f"{format_gib(fixed)} of the {free}",
        )
    if "adapter" in advice:
        add("adapter", _adapter_line(inputs.max_batch_size, advice["adapter"]))
    if "inference" in advice:
        inference = advice["inference"]
        largest, requested = inference["max_kv_cache_len"], inference["requested_kv_cache_len"]
        if largest == requested:
            add("inference", f"an inference spawn fits with kv_cache_len={requested}")
        elif largest:
            add("inference", f"an inference spawn fits with kv_cache_len up to {largest}")
        else:
            add("inference", "an inference spawn does not fit either")
    add("tp", _tp_line(plan, advice["tp"]))
    add("device", _device_line(plan, advice["device"]))
    if "dealloc" in advice and advice["dealloc"]["fits"]:
        names = ", ".join(repr(name) for name in advice["dealloc"]["spawns"])
        lines.append(
            f"dealloc() {names} ({format_gib(advice['dealloc']['bytes'])}) before this spawn; then it fits"
        )
    return lines


def _adapter_line(max_batch_size: int | None, adapter: Mapping[str, Any]) -> str:
    if adapter["fits"]:
        return (
            f"adapter training (.with_adapter()) fits at max_batch_size={max_batch_size}: "
            f"{format_gib(adapter['total_bytes'])} per rank"
        )
    if adapter["max_batch_size"]:
        return f"adapter training (.with_adapter()) fits with max_batch_size={adapter['max_batch_size']}"
    return "adapter training (.with_adapter()) does not fit either"


def _tp_line(plan: Plan, tp_advice: Mapping[str, Any]) -> str:
    if tp_advice["fits"]:
        return (
            f"tp={tp_advice['tp']} fits on the devices with the most free memory: "
            f"{format_gib(tp_advice['total_bytes_per_rank'])} per rank"
        )
    if not tp_advice["higher_tp"]:
        return f"no higher tp: tp={plan.inputs.tp} already splits all {plan.facts.heads} attention heads"
    if not tp_advice["tried"]:
        return (
            f"a higher tp ({', '.join(map(str, tp_advice['higher_tp']))}) needs more devices than the "
            f"{tp_advice['device_count']} available"
        )
    return f"no higher tp fits on the {tp_advice['device_count']} devices (tried tp={tp_advice['tried']})"


def _device_line(plan: Plan, device_advice: Mapping[str, Any]) -> str:
    tp = plan.inputs.tp
    fitting, pinned = device_advice["fitting_devices"], device_advice["pinned"]
    if pinned and len(fitting) >= tp:
        chosen = fitting[:tp]
        free = ", ".join(
            f"{device_id} has {format_gib(device_advice['free_bytes'][device_id])} free"
            for device_id in chosen
        )
        return f"another device: {free}; pin {'it' if tp == 1 else 'them'} instead of {', '.join(pinned)}"
    needed = format_gib(device_advice["needed_bytes"])
    requirement = (
        f"a device with at least {needed} free"
        if tp == 1
        else f"{tp} devices with at least {needed} free each"
    )
    largest = device_advice["largest_free_device"]
    if largest is None:
        return f"another device: {requirement}"
    return (
        f"another device: {requirement} (the most free here is "
        f"{format_gib(device_advice['largest_free_bytes'])} on {largest})"
    )


def _refusal_data(
    plan: Plan, ranks: Sequence[RankPlacement], advice: Mapping[str, Any], held: Sequence[Holding]
) -> dict[str, Any]:
    return {
        "reason": "does_not_fit",
        "spawn": plan.inputs.spawn_name,
        "model": plan.facts.name,
        "plan": plan.to_dict(),
        "ranks": [dict(rank.to_dict(), fits=rank.planned_bytes <= rank.available_bytes) for rank in ranks],
        "held": [holding.to_dict() for holding in held],
        "advice": dict(advice),
    }
