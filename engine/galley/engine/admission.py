"""Admission seam: plan a spawn's memory and place its ranks before any worker starts.

``Admission.admit`` is the one call the spawn path makes. It plans with ``galley.planner``
from the model's config.json and safetensors headers, places the ranks on the devices of
``galley.engine.devices`` and reserves the planned bytes until the spawn is released.
A model whose architecture the planner cannot describe is placed without a plan, on the
devices with the most free memory, and that is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galley.engine.devices import DeviceInventory
from galley.engine.errors import ModelError, SpawnRefused
from galley.engine.spec import ResolvedSpawn
from galley.planner import (
    ArchitectureError,
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

    @property
    def device_kind(self) -> str:
        return self.inventory.kind

    def plan(self, resolved: ResolvedSpawn, record: ModelRecord, base: ModelRecord | None) -> Plan:
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
        )

    def place(
        self, resolved: ResolvedSpawn, record: ModelRecord, base: ModelRecord | None
    ) -> tuple[Plan | None, Any]:
        """Plan and place without reserving; raise SpawnRefused when it does not fit."""
        try:
            plan = self.plan(resolved, record, base)
        except ModelError as error:
            log.warning("%s; placing spawn of %r without a memory plan", error.message, record.key)
            return None, None
        devices = self.inventory.devices()
        placement = admit(plan, devices, pending=self.inventory.pending_bytes())
        return plan, placement

    def admit(
        self, spawn_id: str, resolved: ResolvedSpawn, record: ModelRecord, base: ModelRecord | None
    ) -> SpawnPlacement:
        """Place a spawn and reserve its planned bytes until ``release(spawn_id)``."""
        plan, placement = self.place(resolved, record, base)
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
