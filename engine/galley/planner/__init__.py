"""Memory planner: architecture facts, per-rank memory plans, and admission onto devices.

The engine server calls this before any worker starts, so it imports no torch: it reads
config.json and safetensors headers with json and struct only.

    facts = architecture_facts(config, folder)            # folder optional: exact weight bytes
    plan = plan_spawn(facts, "train", tp=1, max_batch_size=4096, adapter=True, device_kind="cuda")
    placement = admit(plan, devices, pinned=None, pending=loading_bytes_by_device)
    placement.devices                                     # one device id per rank

- ``architecture_facts(config, folder=None, *, name=None) -> ArchitectureFacts``: family,
  architecture, exact parameter count, layers, heads, KV heads, head_dim, hidden, vocab,
  dtype. Raises ArchitectureError for configs it cannot describe.
- ``plan_spawn(facts, kind, tp, kv_cache_len, max_batch_size, adapter, scoring, device_kind)
  -> Plan``: bytes per rank by component (``plan.ranks``), the largest rank's ``components``
  and ``total``, and ``notes`` giving each component's formula, source and calibration.
  ``plan.to_dict()`` is ``{"components", "total", "notes", "ranks", ...}``. Raises
  InvalidRequest for invalid inputs and SpawnRefused when tp does not divide the heads.
- ``admit(plan, devices, pinned=None, *, pending=None, held=()) -> Placement``: devices are
  anything with ``id``, ``free_bytes`` and ``total_bytes`` (``galley.protocol.DeviceInfo``,
  ``DeviceCapacity``). ``held`` lists the ``Holding``s of earlier spawns of a dry run.
  Raises SpawnRefused(message, data) when tp exceeds the devices or a rank's plan exceeds
  its device's available memory. The message names the spawn (``plan_spawn(...,
  spawn_name=...)``), lists every component in GiB, the earlier spawns holding memory and
  what would fit. ``data`` carries the plan, the holdings and that advice, for ``error.data``.

``python -m galley.planner`` prints facts and plans from the command line.
"""

from ..engine.errors import InvalidRequest, SpawnRefused
from .admission import DeviceCapacity, DeviceView, Holding, Placement, RankPlacement, admit
from .architecture import ArchitectureError, ArchitectureFacts, architecture_facts
from .plan import ComponentNote, Plan, PlanInputs, RankPlan, plan_spawn
from .safetensors_headers import SafetensorsHeaderError
from .units import GIB, MIB, format_gib

__all__ = [
    "GIB",
    "MIB",
    "ArchitectureError",
    "ArchitectureFacts",
    "ComponentNote",
    "DeviceCapacity",
    "DeviceView",
    "Holding",
    "InvalidRequest",
    "Placement",
    "Plan",
    "PlanInputs",
    "RankPlacement",
    "RankPlan",
    "SafetensorsHeaderError",
    "SpawnRefused",
    "admit",
    "architecture_facts",
    "format_gib",
    "plan_spawn",
]
