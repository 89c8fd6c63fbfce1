"""Device inventory: virtual device specs, the real CPU device, and the NVML code path."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import pytest

from galley.engine.devices import DeviceInventory, DeviceSpecError, list_devices, parse_virtual_spec
from galley.planner import GIB, SpawnRefused, admit, plan_spawn
from galley.planner.resources import find_architecture

# ---------------------------------------------------------------------------------------
# Virtual device specs


@pytest.mark.parametrize(
    ("spec", "sizes"),
    [
        ("4x80GiB", [80 * GIB] * 4),
        ("2x24GB", [24 * 10**9] * 2),
        ("1x80GiB,1x40GiB", [80 * GIB, 40 * GIB]),
        ("80GiB", [80 * GIB]),
        (" 2 x 0.5 tib ", [512 * GIB] * 2),
        ("3x512MiB", [512 * 1024**2] * 3),
    ],
)
def test_virtual_spec_parsed(spec, sizes):
    assert parse_virtual_spec(spec) == sizes


@pytest.mark.parametrize("spec", ["4x80", "x80GiB", "0x80GiB", "4x0GiB", "4x80XB", "", "4x80GiB,", "four"])
def test_invalid_virtual_spec_rejected(spec):
    with pytest.raises(DeviceSpecError) as raised:
        parse_virtual_spec(spec)
    message = str(raised.value)
    assert repr(spec) in message
    assert "4x80GiB, 2x24GB or 1x80GiB,1x40GiB" in message


def test_virtual_inventory_accounts_by_plan():
    inventory = DeviceInventory("1x80GiB,1x40GiB")
    devices = inventory.devices()
    assert [d.id for d in devices] == ["virtual:0", "virtual:1"]
    assert [d.free_bytes for d in devices] == [80 * GIB, 40 * GIB]
    assert all(d.kind == "virtual" for d in devices)

    inventory.reserve("spawn-a", {"virtual:0": 30 * GIB})
    inventory.mark_loaded("spawn-a")
    inventory.reserve("spawn-b", {"virtual:1": 5 * GIB})
    devices = inventory.devices()
    assert [d.used_bytes for d in devices] == [30 * GIB, 5 * GIB]
    assert [d.free_bytes for d in devices] == [50 * GIB, 35 * GIB]
    assert inventory.pending_bytes() == {}

    inventory.release("spawn-a")
    assert inventory.devices()[0].free_bytes == 80 * GIB
    assert inventory.worker_environment("virtual:1") == {"CUDA_VISIBLE_DEVICES": ""}


def test_virtual_devices_fill_then_refuse():
    inventory = DeviceInventory("2x24GB")
    facts = find_architecture("qwen3-8b").facts()
    plan = plan_spawn(facts, "inference", 1, kv_cache_len=8192, device_kind="virtual")
    first = admit(plan, inventory.devices(), pending=inventory.pending_bytes())
    inventory.reserve("first", first.bytes_by_device())
    second = admit(plan, inventory.devices(), pending=inventory.pending_bytes())
    assert second.devices != first.devices
    inventory.reserve("second", second.bytes_by_device())
    with pytest.raises(SpawnRefused):
        admit(plan, inventory.devices(), pending=inventory.pending_bytes())


# ---------------------------------------------------------------------------------------
# The real CPU device


@pytest.fixture
def memory_holder():
    """A child process holding 200 MB of touched memory, until the test ends."""
    code = "import sys, time; block = bytearray(200_000_000); print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    yield child
    child.kill()
    child.wait()


def test_cpu_device_reads_system_memory(memory_holder):
    inventory = DeviceInventory("cpu")
    (device,) = inventory.devices(spawn_pids={memory_holder.pid: "holder"})
    system = psutil.virtual_memory()
    assert (device.id, device.kind, device.index) == ("cpu", "cpu", 0)
    assert device.total_bytes == system.total
    assert device.used_bytes + device.free_bytes == device.total_bytes
    assert 0 < device.free_bytes < device.total_bytes
    (process,) = device.processes
    assert (process.pid, process.spawn, process.galley) == (memory_holder.pid, "holder", True)
    assert process.bytes >= 200_000_000


def test_cpu_process_memory_skips_exited_pids(memory_holder):
    inventory = DeviceInventory("cpu")
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    sizes = inventory.process_memory([memory_holder.pid, exited.pid])
    assert set(sizes) == {memory_holder.pid}
    assert sizes[memory_holder.pid] >= 200_000_000


def test_cpu_pending_reservations_until_loaded():
    inventory = DeviceInventory("cpu")
    inventory.reserve("loading", {"cpu": 3 * GIB})
    assert inventory.pending_bytes() == {"cpu": 3 * GIB}
    inventory.mark_loaded("loading")
    assert inventory.pending_bytes() == {}
    inventory.release("loading")
    inventory.mark_loaded("unknown")  # a spawn released before it loaded is not an error


def test_auto_falls_back_to_cpu_without_nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("NVML works on this machine")
    except Exception:  # noqa: BLE001  any NVML failure means the fallback applies here
        pass
    inventory = DeviceInventory()
    assert inventory.kind == "cpu"
    assert inventory.fallback_reason and "NVML" in inventory.fallback_reason
    assert [d.id for d in list_devices()] == ["cpu"]
    with pytest.raises(DeviceSpecError, match="--devices cuda was requested but no CUDA GPU is usable"):
        DeviceInventory("cuda")


# ---------------------------------------------------------------------------------------
# The NVML code path, through a stand-in for pynvml (NVML cannot run without a GPU driver)


class FakeNvml:
    """The subset of pynvml that the inventory calls, over two GPUs."""

    class NVMLError(Exception):
        pass

    def __init__(self):
        self.gpus = [
            dict(uuid="GPU-aaaa", name="NVIDIA H100 80GB HBM3", total=80 * GIB, free=60 * GIB, util=35,
                 processes=[(4242, 12 * GIB), (777, 8 * GIB)]),
            dict(uuid="GPU-bbbb", name=b"NVIDIA H100 80GB HBM3", total=80 * GIB, free=79 * GIB, util=None,
                 processes=[(4242, 1 * GIB), (888, None)]),
        ]  # fmt: skip
        self.shutdowns = 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle):
        return handle["uuid"]

    def nvmlDeviceGetName(self, handle):
        return handle["name"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(
            total=handle["total"], free=handle["free"], used=handle["total"] - handle["free"]
        )

    def nvmlDeviceGetUtilizationRates(self, handle):
        if handle["util"] is None:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=handle["util"], memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in handle["processes"]]


def test_nvml_devices_read(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml()
    inventory = DeviceInventory("auto", nvml=nvml)
    assert inventory.kind == "cuda"
    first, second = inventory.devices(spawn_pids={4242: "policy"})
    assert (first.id, first.name, first.utilization) == ("cuda:0", "NVIDIA H100 80GB HBM3", 35.0)
    assert (first.total_bytes, first.used_bytes, first.free_bytes) == (80 * GIB, 20 * GIB, 60 * GIB)
    assert [(p.pid, p.bytes, p.spawn, p.galley) for p in first.processes] == [
        (4242, 12 * GIB, "policy", True),
        (777, 8 * GIB, None, False),
    ]
    assert second.name == "NVIDIA H100 80GB HBM3"
    assert second.utilization is None
    assert [(p.pid, p.bytes) for p in second.processes] == [(4242, 1 * GIB), (888, 0)]

    assert inventory.process_memory([4242, 999]) == {4242: 13 * GIB}
    assert inventory.worker_environment("cuda:1") == {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}
    with pytest.raises(DeviceSpecError, match="device 'cuda:7' not found"):
        inventory.worker_environment("cuda:7")
    inventory.close()
    assert nvml.shutdowns == 1


def test_nvml_pending_subtracted_at_admission(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    inventory = DeviceInventory("cuda", nvml=FakeNvml())
    facts = find_architecture("qwen3-0.6b").facts()
    plan = plan_spawn(facts, "inference", 1, kv_cache_len=1024)
    assert admit(plan, inventory.devices(), pending=inventory.pending_bytes()).devices == ["cuda:1"]
    inventory.reserve("loading", {"cuda:1": 30 * GIB})
    assert admit(plan, inventory.devices(), pending=inventory.pending_bytes()).devices == ["cuda:0"]
    inventory.mark_loaded("loading")
    assert inventory.pending_bytes() == {}


@pytest.mark.parametrize(
    ("visible", "ids"),
    [
        ("1", ["cuda:1"]),
        ("GPU-bbbb,GPU-aaaa", ["cuda:1", "cuda:0"]),
        ("0,7,1", ["cuda:0"]),
        ("GPU-b", ["cuda:1"]),
    ],
)
def test_cuda_visible_devices_respected(monkeypatch, visible, ids):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    inventory = DeviceInventory("auto", nvml=FakeNvml())
    assert [d.id for d in inventory.devices()] == ids


def test_no_visible_gpu_falls_back(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    nvml = FakeNvml()
    inventory = DeviceInventory("auto", nvml=nvml)
    assert inventory.kind == "cpu"
    assert inventory.fallback_reason == "NVML found no visible GPU"
    assert nvml.shutdowns == 1


def test_nvml_init_failure_falls_back():
    nvml = FakeNvml()

    def fail():
        raise nvml.NVMLError("Driver Not Loaded")

    nvml.nvmlInit = fail
    inventory = DeviceInventory("auto", nvml=nvml)
    assert inventory.kind == "cpu"
    assert inventory.fallback_reason == "NVML failed to initialize: Driver Not Loaded"
    with pytest.raises(DeviceSpecError, match="Driver Not Loaded"):
        DeviceInventory("cuda", nvml=nvml)


def test_cpu_utilization_reported():
    inventory = DeviceInventory("cpu")
    inventory.devices()
    time.sleep(0.05)
    (device,) = inventory.devices()
    assert device.utilization is not None and 0.0 <= device.utilization <= 100.0
