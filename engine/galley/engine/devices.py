"""Device inventory: CUDA GPUs through NVML, else one CPU device, or virtual devices from a spec.

- CUDA: nvidia-ml-py (``pynvml``) reads each GPU's name, memory, utilization and the memory
  of every compute process on it. Without NVML (no library, no driver, no GPU) the
  inventory falls back to the CPU and records why in ``fallback_reason``.
- CPU: one ``cpu`` device with system RAM from psutil (free = available memory); processes
  are the Galley workers given to ``devices()``, with their RSS.
- Virtual (``--devices 4x80GiB``): devices that exist only in the accounting. A virtual
  device's used memory is the sum of the plans reserved on it; compute runs on the CPU.

Admission reads ``devices()`` and ``pending_bytes()``: bytes reserved for spawns that are
still loading on a real device, which NVML or psutil do not show yet.

    inventory = DeviceInventory("2x24GB")
    placement = admit(plan, inventory.devices(), pending=inventory.pending_bytes())
    inventory.reserve(spawn_id, placement.bytes_by_device())
    ...                                       # worker reports ready
    inventory.mark_loaded(spawn_id)
    ...                                       # spawn released
    inventory.release(spawn_id)
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from ..planner.units import GIB, MIB, format_gib
from ..protocol import DeviceInfo, ProcessMemory

logger = logging.getLogger(__name__)

ACCEPTED_SPECS = (
    "'auto' (CUDA GPUs if NVML finds any, else the CPU), 'cuda', 'cpu', or virtual devices "
    "written COUNTxSIZE with unit GiB, GB, MiB, MB, TiB or TB, comma-separated: "
    "4x80GiB, 2x24GB or 1x80GiB,1x40GiB"
)

SIZE_UNITS = {"gib": GIB, "gb": 10**9, "mib": MIB, "mb": 10**6, "tib": 1024**4, "tb": 10**12}
_SPEC_ITEM = re.compile(r"^(?:(\d+)\s*x\s*)?(\d+(?:\.\d+)?)\s*([a-z]+)$")
MAX_VIRTUAL_DEVICES = 1024


class DeviceSpecError(ValueError):
    """A --devices value that is not one of ACCEPTED_SPECS, or a device that is unavailable."""


def parse_virtual_spec(spec: str) -> list[int]:
    """Return the size in bytes of each virtual device in ``spec`` ("2x24GB" -> [24e9, 24e9])."""
    sizes: list[int] = []
    for item in spec.split(","):
        text = item.strip().lower()
        match = _SPEC_ITEM.match(text)
        if match is None or match.group(3) not in SIZE_UNITS:
            raise DeviceSpecError(f"invalid device spec {spec!r} at {item.strip()!r}; use {ACCEPTED_SPECS}")
        count = int(match.group(1) or 1)
        size = int(float(match.group(2)) * SIZE_UNITS[match.group(3)])
        if count < 1 or size < 1:
            raise DeviceSpecError(
                f"invalid device spec {spec!r}: {item.strip()!r} needs a count and size above 0; use {ACCEPTED_SPECS}"
            )
        sizes.extend([size] * count)
    if len(sizes) > MAX_VIRTUAL_DEVICES:
        raise DeviceSpecError(
            f"device spec {spec!r} describes {len(sizes)} devices; at most {MAX_VIRTUAL_DEVICES} are supported"
        )
    return sizes


@dataclass
class _Reservation:
    bytes_by_device: dict[str, int]
    loaded: bool = False


@dataclass(frozen=True)
class _Gpu:
    index: int  # NVML index
    uuid: str
    handle: Any


class DeviceInventory:
    """The engine's devices, their memory, and the plans reserved on them."""

    def __init__(self, spec: str | None = None, *, nvml: Any = None):
        """Open the inventory for ``spec`` (see ACCEPTED_SPECS; None means 'auto').

        ``nvml`` replaces the pynvml module, for tests on machines without a GPU.
        Raises DeviceSpecError for an invalid spec, or for 'cuda' when NVML finds no GPU.
        """
        self._lock = threading.Lock()
        self._reservations: dict[str, _Reservation] = {}
        self._nvml: Any = None
        self._gpus: list[_Gpu] = []
        self._virtual_sizes: list[int] = []
        self.fallback_reason: str | None = None

        choice = (spec or "auto").strip().lower()
        if choice in ("auto", "cuda"):
            reason = self._open_nvml(nvml)
            if reason is None:
                self.kind = "cuda"
            elif choice == "cuda":
                raise DeviceSpecError(f"--devices cuda was requested but no CUDA GPU is usable: {reason}")
            else:
                self.kind = "cpu"
                self.fallback_reason = reason
                logger.info("no CUDA GPU in use (%s); using the CPU device", reason)
        elif choice == "cpu":
            self.kind = "cpu"
        else:
            self.kind = "virtual"
            self._virtual_sizes = parse_virtual_spec(spec or "")
        logger.info("device inventory: %s", ", ".join(self._describe()))

    # -----------------------------------------------------------------------------------
    # NVML

    def _open_nvml(self, nvml: Any) -> str | None:
        """Initialize NVML and list the visible GPUs; return why not, or None on success."""
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as error:
                return f"nvidia-ml-py is not installed ({error})"
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            return f"NVML failed to initialize: {error}"
        self._nvml = nvml
        try:
            self._gpus = self._visible_gpus(nvml)
        except nvml.NVMLError as error:
            self.close()
            return f"NVML failed to list GPUs: {error}"
        if not self._gpus:
            self.close()
            return "NVML found no visible GPU"
        return None

    @staticmethod
    def _visible_gpus(nvml: Any) -> list[_Gpu]:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(_Gpu(index, _text(nvml.nvmlDeviceGetUUID(handle)), handle))
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            return gpus
        # NOTE: integer entries are taken as NVML indices, which match CUDA's numbering only
        # under CUDA_DEVICE_ORDER=PCI_BUS_ID; UUID entries (GPU-...) are unambiguous.
        selected: list[_Gpu] = []
        for entry in (part.strip() for part in visible.split(",")):
            match = [
                gpu
                for gpu in gpus
                if (entry.isdigit() and gpu.index == int(entry)) or gpu.uuid.startswith(entry)
            ]
            if not entry or not match:
                break  # CUDA ignores the entries after the first invalid one
            if match[0] not in selected:
                selected.append(match[0])
        return selected

    def close(self) -> None:
        """Shut NVML down; the inventory must not be read afterwards."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as error:
                logger.warning("NVML shutdown failed: %s", error)
            self._nvml = None

    # -----------------------------------------------------------------------------------
    # Readings

    def devices(self, spawn_pids: Mapping[int, str] | None = None) -> list[DeviceInfo]:
        """Read every device now. ``spawn_pids`` maps Galley worker PIDs to spawn names."""
        spawn_pids = spawn_pids or {}
        if self.kind == "cuda":
            return [self._read_gpu(gpu, spawn_pids) for gpu in self._gpus]
        if self.kind == "cpu":
            return [self._read_cpu(spawn_pids)]
        return self._read_virtual()

    def _read_gpu(self, gpu: _Gpu, spawn_pids: Mapping[int, str]) -> DeviceInfo:
        nvml = self._nvml
        memory = nvml.nvmlDeviceGetMemoryInfo(gpu.handle)
        try:
            utilization: float | None = float(nvml.nvmlDeviceGetUtilizationRates(gpu.handle).gpu)
        except nvml.NVMLError:
            utilization = None  # not supported on every GPU (MIG instances, some vGPUs)
        processes = [
            ProcessMemory(pid=pid, bytes=used, spawn=spawn_pids.get(pid), galley=pid in spawn_pids)
            for pid, used in self._gpu_processes(gpu)
        ]
        return DeviceInfo(
            id=f"cuda:{gpu.index}",
            kind="cuda",
            index=gpu.index,
            name=_text(nvml.nvmlDeviceGetName(gpu.handle)),
            total_bytes=int(memory.total),
            used_bytes=int(memory.total - memory.free),
            free_bytes=int(memory.free),
            utilization=utilization,
            processes=processes,
        )

    def _gpu_processes(self, gpu: _Gpu) -> list[tuple[int, int]]:
        # NOTE: inside a container NVML reports host PIDs, which differ from the PIDs the engine
        # started unless the container shares the host PID namespace.
        result = []
        for process in self._nvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle):
            # usedGpuMemory is None where the driver cannot attribute memory (Windows WDDM).
            result.append((int(process.pid), int(process.usedGpuMemory or 0)))
        return result

    def _read_cpu(self, spawn_pids: Mapping[int, str]) -> DeviceInfo:
        memory = psutil.virtual_memory()
        rss = _rss_of(spawn_pids)
        return DeviceInfo(
            id="cpu",
            kind="cpu",
            index=0,
            name=f"CPU ({psutil.cpu_count(logical=True)} logical cores)",
            total_bytes=int(memory.total),
            used_bytes=int(memory.total - memory.available),
            free_bytes=int(memory.available),
            utilization=psutil.cpu_percent(interval=None),
            processes=[
                ProcessMemory(pid=pid, bytes=size, spawn=spawn_pids[pid], galley=True)
                for pid, size in rss.items()
            ],
        )

    def _read_virtual(self) -> list[DeviceInfo]:
        reserved = self._reserved_by_device(include_loaded=True)
        devices = []
        for index, total in enumerate(self._virtual_sizes):
            device_id = f"virtual:{index}"
            used = reserved.get(device_id, 0)
            devices.append(
                DeviceInfo(
                    id=device_id,
                    kind="virtual",
                    index=index,
                    name=f"virtual {format_gib(total)}",
                    total_bytes=total,
                    used_bytes=used,
                    free_bytes=total - used,
                )
            )
        return devices

    def process_memory(self, pids: Iterable[int]) -> dict[int, int]:
        """Return the measured bytes of each PID that is still running.

        On CUDA: the GPU memory NVML attributes to the PID, summed over GPUs (a PID without
        GPU memory is left out). On the CPU and virtual devices: the PID's RSS.
        """
        requested = set(pids)
        if self.kind != "cuda":
            return _rss_of(requested)
        totals: dict[int, int] = {}
        for gpu in self._gpus:
            for pid, used in self._gpu_processes(gpu):
                if pid in requested:
                    totals[pid] = totals.get(pid, 0) + used
        return totals

    def worker_environment(self, device_id: str) -> dict[str, str]:
        """Return the environment that makes a worker see only ``device_id`` (as cuda:0 on a GPU)."""
        if self.kind == "cuda":
            for gpu in self._gpus:
                if f"cuda:{gpu.index}" == device_id:
                    return {"CUDA_VISIBLE_DEVICES": gpu.uuid}
            raise DeviceSpecError(f"device {device_id!r} not found; devices: {', '.join(self._describe())}")
        return {"CUDA_VISIBLE_DEVICES": ""}

    # -----------------------------------------------------------------------------------
    # Reservations

    def reserve(self, spawn_id: str, bytes_by_device: Mapping[str, int]) -> None:
        """Record the planned bytes of an admitted spawn that starts loading now."""
        with self._lock:
            self._reservations[spawn_id] = _Reservation(dict(bytes_by_device))

    def mark_loaded(self, spawn_id: str) -> None:
        """Note that the spawn's memory now shows in the device readings (no-op if unknown)."""
        with self._lock:
            if spawn_id in self._reservations:
                self._reservations[spawn_id].loaded = True

    def release(self, spawn_id: str) -> None:
        with self._lock:
            self._reservations.pop(spawn_id, None)

    def pending_bytes(self) -> dict[str, int]:
        """Return the bytes per device that admission must subtract from ``devices()``' free bytes.

        On real devices: plans of spawns still loading. On virtual devices: nothing, because
        their free bytes already subtract every reservation.
        """
        if self.kind == "virtual":
            return {}
        return self._reserved_by_device(include_loaded=False)

    def _reserved_by_device(self, include_loaded: bool) -> dict[str, int]:
        totals: dict[str, int] = {}
        with self._lock:
            for reservation in self._reservations.values():
                if reservation.loaded and not include_loaded:
                    continue
                for device_id, size in reservation.bytes_by_device.items():
                    totals[device_id] = totals.get(device_id, 0) + size
        return totals

    def _describe(self) -> list[str]:
        if self.kind == "cuda":
            return [f"cuda:{gpu.index} ({gpu.uuid})" for gpu in self._gpus]
        if self.kind == "cpu":
            return ["cpu"]
        return [f"virtual:{index} ({format_gib(size)})" for index, size in enumerate(self._virtual_sizes)]


def list_devices(spec: str | None = None) -> list[DeviceInfo]:
    """Read the devices of ``spec`` once (see DeviceInventory)."""
    inventory = DeviceInventory(spec)
    try:
        return inventory.devices()
    finally:
        inventory.close()


def _rss_of(pids: Iterable[int]) -> dict[int, int]:
    sizes = {}
    for pid in pids:
        try:
            sizes[pid] = int(psutil.Process(pid).memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # exited, or not ours to read
    return sizes


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
