"""Measure the memory planner against a CUDA GPU, run the gpu-marked tests, write one JSON report.

    python -m galley.gpu_check --out report.json

For random-initialized models shaped like Qwen2.5-0.5B and Llama-3.1-8B (config.json from
resources/architectures, bf16, built directly on the GPU, nothing downloaded), each case
plans a spawn, admits it against the GPU's memory, runs it and compares planned bytes with
measured ones:

- inference: a prefill of N tokens; the KV cache's tensor bytes against ``kv_cache``.
- full training and LoRA training (r=16, all linear layers) of an N-token micro-batch:
  gradient, optimizer-state, master-weight and adapter tensor bytes counted exactly. The
  tensors autograd saves in the forward pass are checked against ``activations``,
  ``attention_mask`` and ``logits``, and the bytes the forward pass allocates against their
  sum. The step's peak (``torch.cuda.max_memory_allocated``) is checked against the plan
  without overhead, and NVML's bytes for this process against the whole plan.

Before the memory cases, each model decodes 128 new tokens after 128-token prompts through
the batching scheduler at batch 1 and 64, and the decode tokens/s are compared with the
bound that the GPU's measured copy bandwidth sets (``galley.bench.decode``).

Training steps use the engine's optimizer (MasterWeightsAdamW: fp32 master weights and
gradients, AdamW) on a micro-batch of two packed sequences, as the engine's trainer packs
them. NOTE: the forward is transformers' own loss over every token, not the trainer's
forward_packed, which computes logits only at weighted positions and so needs less.

NOTE: only the CPU side has run so far, in test_planner_activations.py on small models. The
CUDA-only parts (allocator peaks, NVML readings, admission against ``torch.cuda.mem_get_info``)
have not run on a GPU yet.

The run starts no new case after ``--budget-seconds`` (default 420 s), so that with the
gpu tests it fits in 8 minutes on one GPU. Exit status: 0 when every case and test passed, 1 when
any failed, 2 without a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402  (HF_HUB_OFFLINE must be set before transformers loads)

from .bench.decode import DECODE_BATCHES, copy_bandwidth, measure_decode  # noqa: E402
from .engine.devices import DeviceInventory  # noqa: E402
from .engine.errors import SpawnRefused  # noqa: E402
from .planner import ArchitectureFacts, DeviceCapacity, Plan, admit, plan_spawn  # noqa: E402
from .planner.plan import CUDA_CONTEXT_BYTES  # noqa: E402
from .planner.resources import find_architecture  # noqa: E402

MODELS = ("qwen2.5-0.5b-instruct", "llama-3.1-8b-instruct")
INFERENCE_TOKENS = (1024, 8192)
FULL_TRAINING_TOKENS = (256, 1024)
LORA_TRAINING_TOKENS = (512, 2048)
LORA_CONFIG = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
DEFAULT_BUDGET_SECONDS = 420
ENGINE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    kind: str  # "inference" or "train"
    adapter: bool
    tokens: int  # kv_cache_len for inference, max_batch_size for training

    @property
    def label(self) -> str:
        activity = (
            "inference"
            if self.kind == "inference"
            else ("lora_training" if self.adapter else "full_training")
        )
        return f"{activity}_{self.tokens}"

    def plan(self, facts: ArchitectureFacts, device_kind: str, weight_dtype: str | None = None) -> Plan:
        return plan_spawn(
            facts,
            self.kind,  # type: ignore[arg-type]
            1,
            kv_cache_len=self.tokens if self.kind == "inference" else None,
            max_batch_size=self.tokens if self.kind == "train" else None,
            adapter=self.adapter,
            device_kind=device_kind,  # type: ignore[arg-type]
            weight_dtype=weight_dtype,
        )


def default_cases() -> list[Case]:
    """Return the cases of one model, in run order: inference, full training, then LoRA (which
    wraps the model in peft, so it comes last)."""
    return (
        [Case("inference", False, n) for n in INFERENCE_TOKENS]
        + [Case("train", False, n) for n in FULL_TRAINING_TOKENS]
        + [Case("train", True, n) for n in LORA_TRAINING_TOKENS]
    )


# ---------------------------------------------------------------------------------------
# Measurement


class MemoryProbe:
    """torch's allocator counters on CUDA, and NVML's bytes for this process; None on the CPU."""

    def __init__(self, device: torch.device, inventory: DeviceInventory | None = None):
        self.device = device
        self.inventory = inventory
        self.cuda = device.type == "cuda"

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            self.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> int | None:
        if not self.cuda:
            return None
        self.synchronize()
        return torch.cuda.memory_allocated(self.device)

    def peak(self) -> int | None:
        if not self.cuda:
            return None
        self.synchronize()
        return torch.cuda.max_memory_allocated(self.device)

    def reserved(self) -> int | None:
        return torch.cuda.memory_reserved(self.device) if self.cuda else None

    def process_bytes(self) -> int | None:
        """Return NVML's bytes for this PID, or None where NVML cannot attribute them."""
        if not self.cuda or self.inventory is None or self.inventory.kind != "cuda":
            return None
        return self.inventory.process_memory([os.getpid()]).get(os.getpid())


def tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def cache_bytes(cache: Any) -> int:
    """Count the bytes of every K and V tensor in a transformers cache."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return sum(tensor_bytes([layer.keys, layer.values]) for layer in layers)
    return sum(tensor_bytes(pair) for pair in cache)  # legacy tuple of (key, value) per layer


def build_model(config: dict[str, Any], dtype: torch.dtype, device: torch.device, seed: int = 0) -> Any:
    """Build a random-initialized model of ``config`` directly on ``device``, with sdpa attention."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(json.dumps(config))
        model_config = AutoConfig.from_pretrained(folder)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config, dtype=dtype, attn_implementation="sdpa")
    return model


def run_inference(model: Any, tokens: int, probe: MemoryProbe) -> dict[str, int | None]:
    model.eval()
    input_ids = torch.randint(model.config.vocab_size, (1, tokens), device=probe.device)
    probe.reset_peak()
    before = probe.allocated()
    with torch.no_grad():
        output = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
    peak = probe.peak()
    measured = {
        "weights": tensor_bytes(model.parameters()),
        "kv_cache": cache_bytes(output.past_key_values),
        "prefill_peak_above_weights": None if peak is None or before is None else peak - before,
        "process_bytes": probe.process_bytes(),
    }
    del output
    return measured


class SavedTensorCounter:
    """Count the bytes autograd saves for backward, by kind, excluding the model's parameters.

    Saved tensors whose last dimension is the vocabulary size are the loss's logits; square
    (tokens, tokens) ones are attention masks; the rest are activations. Each storage counts once.
    """

    def __init__(self, model: Any, tokens: int):
        self.parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.vocab = model.config.vocab_size
        self.tokens = tokens
        self.storages: dict[tuple[int, int], str] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.parameters:
            kind = "activations"
            if tensor.dim() >= 2 and tensor.shape[-1] == self.vocab:
                kind = "logits"
            elif tensor.dim() >= 2 and tuple(tensor.shape[-2:]) == (self.tokens, self.tokens):
                kind = "attention_mask"
            self.storages[(storage.data_ptr(), storage.nbytes())] = kind
        return tensor

    def bytes_by_kind(self) -> dict[str, int]:
        totals = {"activations": 0, "attention_mask": 0, "logits": 0}
        for (_, nbytes), kind in self.storages.items():
            totals[kind] += nbytes
        return totals


def packed_position_ids(tokens: int, sequences: int, device: torch.device) -> torch.Tensor:
    """Position ids of ``sequences`` equal sequences packed in one row, as the engine's trainer packs them.

    From positions that restart at 0, transformers builds a block-diagonal mask, so this
    forward saves what a packed micro-batch saves.
    """
    length = -(-tokens // sequences)
    return torch.cat(
        [torch.arange(min(length, tokens - start), device=device) for start in range(0, tokens, length)]
    )[None]


def _training_step(model: Any, tokens: int, probe: MemoryProbe) -> dict[str, int | None]:
    """Run forward and backward on one packed micro-batch of two sequences; measure the forward."""
    input_ids = torch.randint(model.config.vocab_size, (1, tokens), device=probe.device)
    position_ids = packed_position_ids(tokens, 2, probe.device)
    counter = SavedTensorCounter(model, tokens)
    before = probe.allocated()
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda tensor: tensor):
        output = model(input_ids=input_ids, position_ids=position_ids, labels=input_ids, use_cache=False)
    after_forward = probe.allocated()
    output.loss.backward()

    saved = counter.bytes_by_kind()
    return {
        "activations": saved["activations"],
        "attention_mask": saved["attention_mask"],
        "logits_forward": saved["logits"] + tensor_bytes([output.logits]),
        "forward_allocated": None if before is None or after_forward is None else after_forward - before,
    }


def run_training(model: Any, tokens: int, probe: MemoryProbe, adapter: bool) -> dict[str, int | None]:
    """Run two training steps with the engine's optimizer; measure the second, when every buffer exists."""
    from .engine.training.optimizer import MasterWeightsAdamW

    model.train()
    if not adapter:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    optimizer = MasterWeightsAdamW(trainable)

    measured: dict[str, int | None] = {}
    for _ in (1, 2):
        probe.reset_peak()
        measured = _training_step(model, tokens, probe)
        measured["process_bytes"] = probe.process_bytes()
        optimizer.gather_gradients(1.0)
        measured["gradients"] = tensor_bytes(entry.master.grad for entry in optimizer.parameters)
        optimizer.clip_gradients(1.0)
        optimizer.step(lr=1e-5, weight_decay=0.0)
        measured["step_peak"] = probe.peak()
        optimizer.zero_grad()

    if adapter:
        measured["adapter"] = tensor_bytes(p for _, p in trainable)
    else:
        measured["weights"] = tensor_bytes(model.parameters())
        measured["master_weights"] = tensor_bytes(e.master for e in optimizer.parameters if e.has_master_copy)
    measured["optimizer_state"] = sum(
        tensor_bytes([state["exp_avg"], state["exp_avg_sq"]]) for state in optimizer.optimizer.state.values()
    )
    del optimizer
    if probe.cuda:
        torch.cuda.empty_cache()
    return measured


def wrap_lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(**LORA_CONFIG))


# ---------------------------------------------------------------------------------------
# Planned against measured


def compare(plan: Plan, measured: dict[str, int | None]) -> list[dict[str, Any]]:
    """Pair each measured quantity with the planned bytes it checks."""
    components = plan.components
    overhead = components.get("overhead", 0)
    pairs = [
        (name, components.get(name), measured.get(name), "tensor bytes" if name not in SAVED else SAVED[name])
        for name in components
        if name != "overhead"
    ]
    if "logits_forward" in measured:
        pairs.append(
            (
                "logits",
                components.get("logits"),
                measured["logits_forward"],
                "logits and the loss's saved log-probabilities after the forward pass; the planned "
                "logits also hold their fp32 gradient, so a ratio near (w + 4) / (w + 8) is expected",
            )
        )
    if measured.get("forward_allocated") is not None:
        planned = sum(components.get(name, 0) for name in ("activations", "attention_mask", "logits"))
        pairs.append(
            ("forward", planned, measured["forward_allocated"], "torch bytes allocated by the forward pass")
        )
    if measured.get("step_peak") is not None:
        pairs.append(
            (
                "total_without_overhead",
                plan.total - overhead,
                measured["step_peak"],
                "torch max_memory_allocated",
            )
        )
    pairs.append(("total", plan.total, measured.get("process_bytes"), "NVML bytes of this process"))

    rows = []
    for name, planned, actual, method in pairs:
        if planned is None or actual is None:
            continue
        ratio = round(actual / planned, 4) if planned else None
        rows.append(
            {
                "component": name,
                "planned_bytes": planned,
                "measured_bytes": actual,
                "ratio": ratio,
                "how": method,
            }
        )
    return rows


SAVED = {
    "activations": "bytes autograd saved for backward in the forward pass, logits and masks excluded",
    "attention_mask": "square (tokens, tokens) tensors autograd saved (sdpa's float mask per layer)",
}


def run_case(
    case: Case, model: Any, facts: ArchitectureFacts, probe: MemoryProbe, weight_dtype: str
) -> dict[str, Any]:
    """Plan, run and compare one case; the model must already be LoRA-wrapped for adapter cases."""
    plan = case.plan(facts, probe.device.type, weight_dtype)
    started = time.monotonic()
    if case.kind == "inference":
        measured = run_inference(model, case.tokens, probe)
    else:
        measured = run_training(model, case.tokens, probe, case.adapter)
    return {
        "case": case.label,
        "status": "ok",
        "seconds": round(time.monotonic() - started, 2),
        "plan": plan.to_dict(),
        "measured": measured,
        "comparison": compare(plan, measured),
    }


def _admit_on_gpu(plan: Plan, probe: MemoryProbe) -> None:
    """Raise SpawnRefused unless the plan fits in the GPU memory this process could use."""
    free, total = torch.cuda.mem_get_info(probe.device)
    # The plan counts the CUDA context and the weights, which this process has already allocated.
    available = free + (probe.reserved() or 0) + CUDA_CONTEXT_BYTES
    admit(
        plan, [DeviceCapacity(id=f"cuda:{probe.device.index or 0}", total_bytes=total, free_bytes=available)]
    )


def run_decode(model: Any, bandwidth: float, deadline: float) -> list[dict[str, Any]]:
    """Measure decode throughput at each batch size in DECODE_BATCHES; a failure is reported, not raised."""
    model.eval()
    results: list[dict[str, Any]] = []
    for batch in DECODE_BATCHES:
        if time.monotonic() > deadline:
            results.append({"batch": batch, "status": "skipped", "reason": "time budget used up"})
            continue
        try:
            with torch.inference_mode():
                results.append({"status": "ok", **measure_decode(model, batch=batch, bandwidth=bandwidth)})
        except Exception as error:  # noqa: BLE001  the memory cases still run
            print(f"decode at batch {batch} failed: {error!r}", file=sys.stderr)
            results.append({"batch": batch, "status": "error", "reason": repr(error)})
        torch.cuda.empty_cache()
    return results


def check_model(key: str, probe: MemoryProbe, deadline: float, bandwidth: float) -> dict[str, Any]:
    resource = find_architecture(key)
    facts = resource.facts()
    report: dict[str, Any] = {"key": key, "name": resource.name, "parameters": facts.parameters, "cases": []}
    started = time.monotonic()
    model = build_model(resource.config(), torch.bfloat16, probe.device)
    report["build_seconds"] = round(time.monotonic() - started, 2)
    report["weights_allocated"] = probe.allocated()
    report["decode"] = run_decode(model, bandwidth, deadline)

    wrapped = False
    for case in default_cases():
        if time.monotonic() > deadline:
            report["cases"].append({"case": case.label, "status": "skipped", "reason": "time budget used up"})
            continue
        plan = case.plan(facts, "cuda")
        try:
            _admit_on_gpu(plan, probe)
        except SpawnRefused as refusal:
            report["cases"].append({"case": case.label, "status": "skipped", "reason": refusal.message})
            continue
        if case.adapter and not wrapped:
            model, wrapped = wrap_lora(model), True
        try:
            report["cases"].append(run_case(case, model, facts, probe, "bfloat16"))
        except Exception as error:  # noqa: BLE001  one failed case must not lose the others' results
            kind = "out of memory" if isinstance(error, torch.cuda.OutOfMemoryError) else type(error).__name__
            print(f"{key} {case.label} failed: {kind}: {error}", file=sys.stderr)
            report["cases"].append(
                {
                    "case": case.label,
                    "status": "error",
                    "reason": f"{kind}: {error}",
                    "traceback": traceback.format_exc(),
                }
            )
            torch.cuda.empty_cache()
    del model
    torch.cuda.empty_cache()
    return report


# ---------------------------------------------------------------------------------------
# gpu-marked tests


def run_gpu_tests(timeout: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    try:
        result = subprocess.run(
            command, cwd=ENGINE_DIR, capture_output=True, text=True, timeout=max(timeout, 30)
        )
    except subprocess.TimeoutExpired:
        return {"ran": True, "passed": False, "summary": f"timed out after {timeout:.0f} s"}
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = next(
        (line for line in reversed(lines) if re.search(r"passed|failed|error|no tests ran", line)), ""
    )
    # pytest exits 5 when no test is marked gpu, which is not a failure of this check.
    return {
        "ran": True,
        "passed": result.returncode in (0, 5),
        "returncode": result.returncode,
        "summary": summary,
    }


# ---------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m galley.gpu_check",
        description="Measure the memory planner against a CUDA GPU and run the gpu-marked tests.",
    )
    parser.add_argument("--out", type=Path, required=True, help="path of the JSON report to write")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated architecture keys")
    parser.add_argument(
        "--budget-seconds", type=float, default=DEFAULT_BUDGET_SECONDS, help="stop starting cases after this"
    )
    parser.add_argument("--skip-tests", action="store_true", help="do not run the gpu-marked pytest tests")
    args = parser.parse_args(argv)

    started = time.monotonic()
    report: dict[str, Any] = {"tool": "galley.gpu_check", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if not torch.cuda.is_available():
        report["error"] = "no CUDA device: torch.cuda.is_available() is false"
        _write(args.out, report)
        print(f"error: {report['error']}", file=sys.stderr)
        return 2

    inventory = DeviceInventory("auto")
    device = torch.device("cuda", 0)
    report["device"] = _device_report(device, inventory)
    bandwidth = copy_bandwidth(device)
    report["device"]["copy_bandwidth_bytes_per_s"] = round(bandwidth)
    probe = MemoryProbe(device, inventory)
    deadline = started + args.budget_seconds

    report["models"] = [
        check_model(key.strip(), probe, deadline, bandwidth) for key in args.models.split(",") if key.strip()
    ]
    remaining = args.budget_seconds + 60 - (time.monotonic() - started)
    report["tests"] = {"ran": False} if args.skip_tests else run_gpu_tests(remaining)
    report["duration_s"] = round(time.monotonic() - started, 1)
    inventory.close()
    _write(args.out, report)

    failed_cases = [c for m in report["models"] for c in m["cases"] if c["status"] == "error"]
    tests_failed = report["tests"].get("ran") and not report["tests"].get("passed")
    print(
        f"wrote {args.out}: {len(failed_cases)} failed cases, tests {report['tests'].get('summary', 'skipped')}"
    )
    return 1 if failed_cases or tests_failed else 0


def _device_report(device: torch.device, inventory: DeviceInventory) -> dict[str, Any]:
    free, total = torch.cuda.mem_get_info(device)
    return {
        "name": torch.cuda.get_device_name(device),
        "total_bytes": total,
        "free_bytes_at_start": free,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "nvml": inventory.kind == "cuda",
        "nvml_fallback_reason": inventory.fallback_reason,
    }


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
