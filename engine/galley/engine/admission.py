"""Admission seam: plan a spawn's memory and place its ranks before any worker starts.

``Admission.admit`` is the one call the spawn path makes. It plans with ``galley.planner``
from the model's config.json and safetensors headers, places the ranks on the devices of
``galley.engine.devices`` and reserves the planned bytes until the spawn is released.
A model whose architecture the planner cannot describe is placed without a plan, on the
devices with the most free memory, and that is logged.

Dry runs (``plan_dry_run``) reserve nothing on the devices. Each session's planned spawns
are kept here instead, and every later plan of that session is checked against the devices
minus them, so a dry run checks whether the whole recipe fits. ``drop_dry_run_spawn``
(the recipe's ``dealloc()``) and ``end_dry_run`` (the session closed) give the bytes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galley.engine.devices import DeviceInventory
from galley.engine.errors import InvalidRequest, ModelError, SpawnRefused
from galley.engine.spec import ResolvedSpawn
from galley.planner import (
    ArchitectureError,
    Holding,
    Placement,
    Plan,
    SafetensorsHeaderError,
    admit,
    architecture_facts,
    plan_spawn,
)
from galley.protocol import ModelRecord

log = logging.getLogger("galley.engine.admission")


@dataclass
class SpawnPlacement:
    devices: list[str]  # one device id per rank ("cuda:1", "cpu", "virtual:0")
    worker_devices: list[
        str
    ]  # the torch device each rank's worker uses ("cuda:0" with its GPU alone visible)
    environments: list[dict[str, str]]  # extra environment of each rank's worker
    plan: dict[str, Any] | None = None  # Plan.to_dict()
    rank_components: list[dict[str, int] | None] = field(default_factory=list)


def _facts(record: ModelRecord, base: ModelRecord | None):
    """Facts of the weights a spawn loads: an adapter's come from its base model."""
    source = base if record.kind == "adapter" and base is not None else record
    folder = Path(source.path) if source.path else None
    return architecture_facts(source.config, folder, name=source.key)


class Admission:
    def __init__(self, inventory: DeviceInventory):
        self.inventory = inventory
        # Session id -> spawn name -> placement of each spawn its dry run planned, in plan
        # order. None for a spawn planned without a memory plan, which reserves nothing.
        self._dry_runs: dict[str, dict[str, Placement | None]] = {}

    @property
    def device_kind(self) -> str:
        return self.inventory.kind

    def plan(
        self,
        resolved: ResolvedSpawn,
        record: ModelRecord,
        base: ModelRecord | None,
        name: str | None = None,
    ) -> Plan:
        """Plan a spawn; raise SpawnRefused (tp invalid) or ModelError (unknown architecture)."""
        try:
            facts = _facts(record, base)
        except (ArchitectureError, SafetensorsHeaderError) as error:
            raise ModelError(f"cannot plan model {record.key!r}: {error}") from None
        return plan_spawn(
            facts,
            resolved.kind,
            tp=resolved.tp,
            kv_cache_len=resolved.kv_cache_len,
            max_batch_size=resolved.max_batch_size,
            adapter=resolved.adapter,
            scoring=resolved.scoring,
            device_kind=self.device_kind,  # type: ignore[arg-type]
            spawn_name=name,
        )

    def place(
        self,
        resolved: ResolvedSpawn,
        record: ModelRecord,
        base: ModelRecord | None,
        name: str | None = None,
        held: list[Holding] | None = None,
    ) -> tuple[Plan | None, Placement | None]:
        """Plan and place without reserving; raise SpawnRefused when it does not fit.

        ``held`` is subtracted from the devices' free memory like the bytes of loading spawns.
        """
        try:
            plan = self.plan(resolved, record, base, name)
        except ModelError as error:
            log.warning("%s; placing spawn of %r without a memory plan", error.message, record.key)
            return None, None
        devices = self.inventory.devices()
        placement = admit(plan, devices, pending=self.inventory.pending_bytes(), held=held or [])
        return plan, placement

    # -- dry runs -------------------------------------------------------------------------

    def plan_dry_run(
        self,
        session_id: str,
        name: str,
        resolved: ResolvedSpawn,
        record: ModelRecord,
        base: ModelRecord | None,
    ) -> tuple[Plan | None, Placement | None, list[Holding]]:
        """Place a dry-run spawn against the devices minus the session's earlier planned spawns.

        Returns the plan, its placement and those earlier holdings. A spawn that fits holds its
        planned bytes for the session's later plans. A refused one reserves nothing, but its name
        stays taken so that the recipe's later dealloc() of it succeeds. Raises InvalidRequest
        when the session already planned a spawn of this name, as spawn does.
        """
        planned = self._dry_runs.setdefault(session_id, {})
        if name in planned:
            raise InvalidRequest(
                f"this dry run already planned a spawn named {name!r}; spawn names are unique per session, "
                f"so choose another name or dealloc() the first one"
            )
        # NOTE: a real spawn that does not fit first releases kept (keep-warm) spawns of closed
        # sessions. A dry run counts their memory as used, so it can reject what a real run admits.
        held = self.dry_run_holdings(session_id)
        planned[name] = None
        plan, placement = self.place(resolved, record, base, name, held)
        planned[name] = placement
        return plan, placement, held

    def dry_run_holdings(self, session_id: str) -> list[Holding]:
        """Return what the session's planned spawns hold, one Holding per spawn and device."""
        holdings = []
        for name, placement in self._dry_runs.get(session_id, {}).items():
            if placement is None:
                continue
            for device, size in placement.bytes_by_device().items():
                holdings.append(Holding(spawn=name, device=device, bytes=size))
        return holdings

    def drop_dry_run_spawn(self, session_id: str, name: str) -> bool:
        """Give back a planned spawn's bytes (its dealloc()); return False if it was not planned."""
        planned = self._dry_runs.get(session_id, {})
        if name not in planned:
            return False
        del planned[name]
        return True

    def end_dry_run(self, session_id: str) -> None:
        self._dry_runs.pop(session_id, None)

    # -- spawns ---------------------------------------------------------------------------

    def admit(
        self,
        spawn_id: str,
        resolved: ResolvedSpawn,
        record: ModelRecord,
        base: ModelRecord | None,
        name: str | None = None,
    ) -> SpawnPlacement:
        """Place a spawn and reserve its planned bytes until ``release(spawn_id)``.

        ``name`` is the spawn's name, for the refusal message.
        """
        plan, placement = self.place(resolved, record, base, name)
        if placement is None:
            devices = self._devices_by_free_memory(resolved.tp)
            rank_components: list[dict[str, int] | None] = [None] * resolved.tp
        else:
            devices = placement.devices
            rank_components = [dict(rank.components) for rank in plan.ranks] if plan else [None] * resolved.tp
            self.inventory.reserve(spawn_id, placement.bytes_by_device())

        environments = [self.inventory.worker_environment(device) for device in devices]
        worker_devices = ["cuda:0" if self.device_kind == "cuda" else "cpu" for _ in devices]
        return SpawnPlacement(
            devices=devices,
            worker_devices=worker_devices,
            environments=environments,
            plan=plan.to_dict() if plan else None,
            rank_components=rank_components,
        )

    def _devices_by_free_memory(self, tp: int) -> list[str]:
        devices = sorted(self.inventory.devices(), key=lambda device: device.free_bytes, reverse=True)
        if tp > len(devices):
            raise SpawnRefused(
                f"tp={tp} needs {tp} devices but {len(devices)} are available; lower tp",
                {"reason": "tp_exceeds_devices", "tp": tp, "devices": [device.id for device in devices]},
            )
        return [device.id for device in devices[:tp]]

    def loaded(self, spawn_id: str) -> None:
        self.inventory.mark_loaded(spawn_id)

    def release(self, spawn_id: str) -> None:
        self.inventory.release(spawn_id)
