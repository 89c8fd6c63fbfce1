"""Print architecture facts or a spawn's memory plan as JSON, without loading any weights.

    python -m galley.planner facts MODEL
    python -m galley.planner plan MODEL --kind train --max-batch-size 4096 [--adapter] [--devices 1x80GiB]

MODEL is a model folder, a config.json file, or an architecture name or key from
resources/architectures (e.g. qwen3-32b). With --devices, the plan is also admitted onto
those devices: a spawn that does not fit prints the refusal and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..engine.devices import DeviceInventory, DeviceSpecError
from ..engine.errors import InvalidRequest, SpawnRefused
from ..protocol import DEFAULT_KV_CACHE_LEN
from .admission import admit
from .architecture import ArchitectureError, ArchitectureFacts, architecture_facts
from .plan import DEFAULT_LORA_RANK, plan_spawn
from .resources import find_architecture
from .safetensors_headers import SafetensorsHeaderError


def load_facts(model: str) -> ArchitectureFacts:
    """Read facts from a model folder, a config.json path, or a resources architecture name."""
    path = Path(model)
    if path.is_dir():
        return architecture_facts(json.loads((path / "config.json").read_text()), path)
    if path.is_file():
        return architecture_facts(json.loads(path.read_text()), name=path.resolve().parent.name)
    return find_architecture(model).facts()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m galley.planner",
        description="Print architecture facts or a spawn's memory plan as JSON, without loading weights.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    facts = commands.add_parser("facts", help="print the model's architecture facts")
    facts.add_argument("model", help="model folder, config.json, or architecture name/key")

    plan = commands.add_parser("plan", help="print the spawn's memory plan per rank")
    plan.add_argument("model", help="model folder, config.json, or architecture name/key")
    plan.add_argument("--kind", choices=("inference", "train"), default="inference")
    plan.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks, one device each")
    plan.add_argument(
        "--kv-cache-len", type=int, help=f"KV cache tokens (inference; default {DEFAULT_KV_CACHE_LEN})"
    )
    plan.add_argument("--max-batch-size", type=int, help="tokens per training micro-batch (train)")
    plan.add_argument("--adapter", action="store_true", help="LoRA adapter instead of full weights")
    plan.add_argument("--lora-rank", type=int, default=DEFAULT_LORA_RANK, help="LoRA rank r")
    plan.add_argument("--scoring", action="store_true", help="add a scalar value head")
    plan.add_argument(
        "--device-kind", choices=("cuda", "cpu", "virtual"), help="default: from --devices, else cuda"
    )
    plan.add_argument("--devices", help="admit onto these devices: auto, cuda, cpu, or e.g. 4x80GiB")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        facts = load_facts(args.model)
        if args.command == "facts":
            print(json.dumps(facts.to_dict(), indent=2))
            return 0
        return _plan_command(args, facts)
    except (ArchitectureError, SafetensorsHeaderError, LookupError, DeviceSpecError, InvalidRequest) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SpawnRefused as error:
        print(error.message, file=sys.stderr)
        return 1


def _plan_command(args: argparse.Namespace, facts: ArchitectureFacts) -> int:
    inventory = DeviceInventory(args.devices) if args.devices else None
    try:
        device_kind = args.device_kind or (inventory.kind if inventory else "cuda")
        kv_cache_len = args.kv_cache_len or (DEFAULT_KV_CACHE_LEN if args.kind == "inference" else None)
        plan = plan_spawn(
            facts,
            args.kind,
            args.tp,
            kv_cache_len,
            args.max_batch_size,
            args.adapter,
            args.scoring,
            device_kind,  # type: ignore[arg-type]  (argparse choices)
            lora_rank=args.lora_rank,
        )
        output = plan.to_dict()
        if inventory is not None:
            output["placement"] = admit(plan, inventory.devices()).to_dict()["ranks"]
        print(json.dumps(output, indent=2))
        return 0
    finally:
        if inventory is not None:
            inventory.close()


if __name__ == "__main__":
    sys.exit(main())
