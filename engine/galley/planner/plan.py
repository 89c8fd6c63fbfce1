"""Per-rank memory plan of a spawn, in bytes by component, with each term's formula and source.

Components (those that apply to the spawn):

    weights          every weight tensor's share on the rank * weight dtype size
    adapter          LoRA A and B matrices (rank r on all linear layers but lm_head), fp32
    value_head       Linear(hidden, 1) with bias, fp32 (scoring models)
    kv_cache         kv_cache_len tokens of K and V (inference)
    gradients        fp32 gradients of the trainable parameters (training)
    optimizer_state  AdamW's two fp32 moments per trainable parameter (training)
    master_weights   an fp32 copy of 16-bit trainable parameters (training)
    activations      tensors saved for backward for one max_batch_size micro-batch (training)
    attention_mask   the packing mask that sdpa saves as a float bias in every layer (training)
    logits           logits, log-probabilities and their gradient for the loss (training)
    overhead         per-worker memory outside the model's tensors: the CUDA context and NCCL
                     buffers on GPUs and virtual devices, the Python, torch and transformers
                     runtime (RSS) on the CPU

Exact terms are counted from tensor shapes and match the tensors of real transformers and
peft models (the planner tests compare them). Activations, the attention mask, logits and
overhead are estimates: the activation formula matches autograd's saved tensors of small
models on the CPU, and ``python -m galley.gpu_check`` measures every term on a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..engine.errors import InvalidRequest, SpawnRefused
from .architecture import ArchitectureFacts
from .sharding import split_sizes
from .units import MIB, dtype_bytes, format_gib, normalize_dtype

SpawnKind = Literal["inference", "train"]
DeviceKind = Literal["cuda", "cpu", "virtual"]
DEVICE_KINDS = ("cuda", "cpu", "virtual")

# The engine's LoRA defaults (peft LoraConfig with target_modules="all-linear").
DEFAULT_LORA_RANK = 16
# peft's get_peft_model and PeftModel.from_pretrained cast adapter weights to fp32 when the base
# model is 16-bit (autocast_adapter_dtype=True, their default), so adapters are fp32 everywhere.
ADAPTER_BYTES = 4
VALUE_HEAD_BYTES = 4  # torch.nn.Linear created with torch's default dtype, float32

# Estimates, not calibrated on any GPU yet (gpu_check reports the measured values). Virtual
# devices stand in for GPUs, so they plan these too.
CUDA_CONTEXT_BYTES = 500 * MIB
NCCL_CHANNELS = 32
NCCL_BUFFER_BYTES = 4 * MIB  # NCCL_BUFFSIZE default
NCCL_BYTES = 2 * NCCL_CHANNELS * NCCL_BUFFER_BYTES  # 2 ring neighbours; 256 MiB

# Estimate of a CPU worker's RSS before its model's tensors: the Python interpreter with torch,
# transformers and peft imported. It was measured on Linux x86_64 (Python 3.11, torch 2.15 CPU,
# transformers 5.23, peft 0.21.2) as a real worker's RSS when it reported ready, minus the
# planned bytes of its tiny generated model. A worker forked from the engine's fork server
# (the default start method on Linux) measured 475 MiB with the tiny Llama and 511 MiB with
# the tiny Qwen3.
# NOTE: a worker started as a fresh interpreter (--worker-start subprocess, the default where
# fork is unavailable) measured about 780 MiB, so plans there undercount by about 270 MiB.
# RSS also counts pages shared with the fork server, so the system memory a forked worker
# takes is lower than this.
CPU_WORKER_RUNTIME_BYTES = 512 * MIB


@dataclass(frozen=True)
class ComponentNote:
    formula: str  # with this plan's numbers filled in
    source: str  # where the formula and its constants come from
    calibration: str  # "exact" (counted) or "estimate" (not yet calibrated against a measurement)

    def to_dict(self) -> dict[str, str]:
        return {"formula": self.formula, "source": self.source, "calibration": self.calibration}


@dataclass(frozen=True)
class PlanInputs:
    kind: SpawnKind
    tp: int
    kv_cache_len: int | None
    max_batch_size: int | None
    adapter: bool
    scoring: bool
    device_kind: DeviceKind
    weight_dtype: str
    lora_rank: int
    spawn_name: str | None = None  # for messages only; it changes no size


@dataclass(frozen=True)
class RankPlan:
    rank: int
    components: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.components.values())

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "components": dict(self.components), "total": self.total}


@dataclass(frozen=True)
class Plan:
    """Planned bytes per rank; ``components`` and ``total`` are the largest rank's."""

    facts: ArchitectureFacts
    inputs: PlanInputs
    ranks: tuple[RankPlan, ...]
    notes: dict[str, ComponentNote]

    @property
    def largest(self) -> RankPlan:
        return max(self.ranks, key=lambda rank: rank.total)

    @property
    def components(self) -> dict[str, int]:
        return self.largest.components

    @property
    def total(self) -> int:
        return self.largest.total

    def replan(self, **changes: Any) -> Plan:
        """Plan the same model with some inputs changed (``kv_cache_len=...``, ``tp=...``)."""
        inputs = dataclasses.replace(self.inputs, **changes)
        if "device_kind" in changes and "weight_dtype" not in changes:
            inputs = dataclasses.replace(
                inputs, weight_dtype=default_weight_dtype(self.facts, inputs.device_kind)
            )
        return plan_spawn(self.facts, **dataclasses.asdict(inputs))

    def spawn_label(self) -> str:
        """Return "Spawn 'NAME'" for messages, or "Spawn" when the plan has no spawn name."""
        name = self.inputs.spawn_name
        return f"Spawn {name!r}" if name else "Spawn"

    def describe(self) -> str:
        """Return one line naming the spawn's model and settings, for messages."""
        inputs = self.inputs
        if inputs.kind == "train":
            activity = "adapter training" if inputs.adapter else "full training"
            size = f"max_batch_size={inputs.max_batch_size}"
        else:
            activity = "inference with adapter" if inputs.adapter else "inference"
            size = f"kv_cache_len={inputs.kv_cache_len}"
        scoring = ", scoring" if inputs.scoring else ""
        return f"{self.facts.name} {activity}{scoring}, tp={inputs.tp}, {size}, {inputs.weight_dtype} weights"

    def component_lines(self, rank: RankPlan | None = None) -> list[str]:
        """Return one ``name  N.NN GiB  (exact|estimate)`` line per component of ``rank``
        (default: the largest)."""
        rank = rank or self.largest
        width = max(len(name) for name in rank.components)
        lines = []
        for name, size in rank.components.items():
            note = self.notes.get(name)
            calibration = f"  ({note.calibration})" if note else ""
            lines.append(f"{name:<{width}}  {format_gib(size):>12}{calibration}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        inputs = self.inputs
        return {
            "spawn": inputs.spawn_name,
            "model": self.facts.name,
            "kind": inputs.kind,
            "tp": inputs.tp,
            "kv_cache_len": inputs.kv_cache_len,
            "max_batch_size": inputs.max_batch_size,
            "adapter": inputs.adapter,
            "scoring": inputs.scoring,
            "device_kind": inputs.device_kind,
            "weight_dtype": inputs.weight_dtype,
            "lora_rank": inputs.lora_rank if inputs.adapter else None,
            "components": dict(self.components),
            "total": self.total,
            "ranks": [rank.to_dict() for rank in self.ranks],
            "notes": {name: note.to_dict() for name, note in self.notes.items()},
        }


def default_weight_dtype(facts: ArchitectureFacts, device_kind: str) -> str:
    """Return the dtype the engine loads weights in: config.json's on CUDA and virtual devices,
    float32 on the CPU."""
    return "float32" if device_kind == "cpu" else facts.dtype


def plan_spawn(
    facts: ArchitectureFacts,
    kind: SpawnKind,
    tp: int = 1,
    kv_cache_len: int | None = None,
    max_batch_size: int | None = None,
    adapter: bool = False,
    scoring: bool = False,
    device_kind: DeviceKind = "cuda",
    *,
    weight_dtype: str | None = None,
    lora_rank: int = DEFAULT_LORA_RANK,
    spawn_name: str | None = None,
) -> Plan:
    """Plan a spawn's memory per rank.

    Inference spawns need ``kv_cache_len``; training spawns need ``max_batch_size`` (tokens
    per micro-batch). ``weight_dtype`` defaults to what the engine loads on ``device_kind``.
    ``spawn_name`` only labels messages.

    Raises InvalidRequest (a ValueError) for invalid inputs, and SpawnRefused when tp does
    not divide the attention heads.
    """
    inputs = _validated_inputs(
        facts,
        kind,
        tp,
        kv_cache_len,
        max_batch_size,
        adapter,
        scoring,
        device_kind,
        weight_dtype,
        lora_rank,
        spawn_name,
    )
    ranks = tuple(RankPlan(rank, _rank_components(facts, inputs, rank)) for rank in range(tp))
    plan = Plan(facts=facts, inputs=inputs, ranks=ranks, notes={})
    notes = _notes(facts, inputs, plan.largest.rank)
    return dataclasses.replace(plan, notes={name: notes[name] for name in plan.components})


def _validated_inputs(
    facts: ArchitectureFacts,
    kind: str,
    tp: Any,
    kv_cache_len: Any,
    max_batch_size: Any,
    adapter: bool,
    scoring: bool,
    device_kind: str,
    weight_dtype: str | None,
    lora_rank: Any,
    spawn_name: str | None,
) -> PlanInputs:
    problems = []
    if kind not in ("inference", "train"):
        problems.append(f"kind={kind!r} is invalid; use 'inference' or 'train'")
    if device_kind not in DEVICE_KINDS:
        problems.append(f"device_kind={device_kind!r} is invalid; use one of {', '.join(DEVICE_KINDS)}")
    if not _is_positive_int(tp):
        problems.append(f"tp={tp!r} is invalid; use a positive integer such as 1")
    if kind == "inference" and not _is_positive_int(kv_cache_len):
        problems.append(
            f"kv_cache_len={kv_cache_len!r} is invalid; an inference spawn needs a positive token count"
        )
    if kind == "train" and not _is_positive_int(max_batch_size):
        problems.append(
            f"max_batch_size={max_batch_size!r} is invalid; a training spawn needs a positive token count per micro-batch"
        )
    if kind != "inference" and kv_cache_len is not None and not _is_positive_int(kv_cache_len):
        problems.append(
            f"kv_cache_len={kv_cache_len!r} is invalid; use a positive token count or leave it unset"
        )
    if adapter and not _is_positive_int(lora_rank):
        problems.append(f"lora_rank={lora_rank!r} is invalid; use a positive integer such as 16")
    try:
        dtype = normalize_dtype(weight_dtype) if weight_dtype is not None else None
    except ValueError as error:
        problems.append(f"weight_dtype: {error}")
        dtype = None
    if problems:
        label = f"spawn {spawn_name!r}" if spawn_name else "the spawn"
        raise InvalidRequest(f"cannot plan {label}: " + "; ".join(problems))

    if facts.heads % tp != 0:
        valid = facts.valid_tp()
        choices = (
            ", ".join(str(n) for n in valid[:-1]) + f" or {valid[-1]}" if len(valid) > 1 else str(valid[0])
        )
        label = f" (spawn {spawn_name!r})" if spawn_name else ""
        raise SpawnRefused(
            f"tp={tp} does not divide {facts.name}'s {facts.heads} attention heads{label}; use {choices}",
            {
                "reason": "tp_invalid",
                "spawn": spawn_name,
                "model": facts.name,
                "tp": tp,
                "heads": facts.heads,
                "valid_tp": valid,
            },
        )
    return PlanInputs(
        kind=kind,  # type: ignore[arg-type]
        tp=tp,
        kv_cache_len=kv_cache_len,
        max_batch_size=max_batch_size if kind == "train" else None,
        adapter=bool(adapter),
        scoring=bool(scoring),
        device_kind=device_kind,  # type: ignore[arg-type]
        weight_dtype=dtype or default_weight_dtype(facts, device_kind),
        lora_rank=lora_rank,
        spawn_name=spawn_name,
    )


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# ---------------------------------------------------------------------------------------
# Component sizes of one rank


@dataclass(frozen=True)
class _RankShape:
    """Per-rank widths of the sharded dimensions."""

    q_dim: int
    kv_dim: int
    intermediate: int
    vocab: int


def _rank_shape(facts: ArchitectureFacts, tp: int, rank: int) -> _RankShape:
    return _RankShape(
        q_dim=facts.heads // tp * facts.head_dim,
        kv_dim=facts.kv_heads_on_rank(tp, rank) * facts.head_dim,
        intermediate=split_sizes(facts.intermediate, tp)[rank],
        vocab=split_sizes(facts.vocab, tp)[rank],
    )


def lora_parameters(facts: ArchitectureFacts, lora_rank: int, tp: int = 1, rank: int = 0) -> int:
    """Count LoRA parameters on one rank: r * (in + out) per adapted linear layer.

    All seven linear layers of each decoder layer are adapted (peft "all-linear" skips lm_head).
    Under tp, a column-parallel layer's B matrix is split with its output rows, and a
    row-parallel layer's A matrix with its input columns. The other matrix is replicated.
    """
    shape = _rank_shape(facts, tp, rank)
    hidden = facts.hidden
    per_layer = (
        (hidden + shape.q_dim)  # q_proj
        + 2 * (hidden + shape.kv_dim)  # k_proj, v_proj
        + (shape.q_dim + hidden)  # o_proj
        + 2 * (hidden + shape.intermediate)  # gate_proj, up_proj
        + (shape.intermediate + hidden)  # down_proj
    )
    return lora_rank * per_layer * facts.layers


def activation_bytes_per_token(
    facts: ArchitectureFacts,
    weight_bytes: int,
    tp: int,
    rank: int,
    adapter: bool,
    lora_rank: int,
    device_kind: str = "cuda",
) -> int:
    """Estimate the bytes autograd saves for backward per token of a micro-batch.

    Counted from the tensors HF Llama/Qwen decoder layers save with sdpa attention and no
    activation checkpointing, for a packed micro-batch. The engine's trainer packs several
    sequences per row, so HF passes a block-diagonal mask and expands K and V to every query
    head. Autograd saves an op's input only when a gradient needs it, so the frozen base
    layers under LoRA keep less than full training does. The quadratic packing mask is the
    separate ``attention_mask`` component.
    """
    shape = _rank_shape(facts, tp, rank)
    hidden, w = facts.hidden, weight_bytes
    heads = facts.heads // tp
    # sdpa saves q, K and V (expanded to all query heads), its output (o_proj's input is a
    # view of it) and a float32 logsumexp per head; RoPE saves cos and sin.
    attention = 4 * w * shape.q_dim + 4 * heads + 2 * w * facts.head_dim
    if adapter:
        norm = 4 * hidden  # RMSNorm's float32 input copy; its frozen weight needs no saved input
        qk_norm = 4 * (shape.q_dim + shape.kv_dim)
        mlp = 3 * w * shape.intermediate  # SiLU input, SiLU output, up_proj output
    else:
        # Also the cast input (for the norm weight's gradient) and the output (next linear's input).
        norm = 4 * hidden + 2 * w * hidden
        qk_norm = (4 + w) * (shape.q_dim + shape.kv_dim)
        mlp = 4 * w * shape.intermediate  # the above plus down_proj's input
    per_layer = 2 * norm + attention + mlp
    if facts.family == "qwen3":
        per_layer += qk_norm  # q_norm and k_norm over head_dim
    if adapter:
        # Each of the 7 adapted layers keeps its input cast to fp32 after dropout, the dropout
        # mask (bool on CUDA, float32 on the CPU), and lora_A's fp32 output (r values).
        mask_bytes = 4 if device_kind == "cpu" else 1
        adapted_inputs = 5 * hidden + shape.q_dim + shape.intermediate
        per_layer += (4 + mask_bytes) * adapted_inputs + 7 * 4 * lora_rank
    return facts.layers * per_layer + norm  # the final norm saves once more


def _rank_components(facts: ArchitectureFacts, inputs: PlanInputs, rank: int) -> dict[str, int]:
    w = dtype_bytes(inputs.weight_dtype)
    tp = inputs.tp
    shape = _rank_shape(facts, tp, rank)
    components: dict[str, int] = {"weights": facts.weight_elements_per_rank(tp)[rank] * w}

    adapter_params = lora_parameters(facts, inputs.lora_rank, tp, rank) if inputs.adapter else 0
    if inputs.adapter:
        components["adapter"] = adapter_params * ADAPTER_BYTES
    value_head_params = facts.hidden + 1 if inputs.scoring else 0
    if inputs.scoring:
        components["value_head"] = value_head_params * VALUE_HEAD_BYTES

    if inputs.kind == "inference":
        assert inputs.kv_cache_len is not None
        # NOTE: a prefill's transient activations and full-sequence logits (logprobs ops) are not
        # planned; they scale with the longest request, which is unknown at spawn time.
        components["kv_cache"] = inputs.kv_cache_len * facts.kv_bytes_per_token(w, tp, rank)
    else:
        assert inputs.max_batch_size is not None
        tokens = inputs.max_batch_size
        trainable = adapter_params if inputs.adapter else facts.weight_elements_per_rank(tp)[rank]
        trainable += value_head_params
        components["gradients"] = trainable * 4
        components["optimizer_state"] = trainable * 8
        # Adapters and the value head are fp32 already; only 16-bit base weights get a master copy.
        if not inputs.adapter and w != 4:
            components["master_weights"] = facts.weight_elements_per_rank(tp)[rank] * 4
        components["activations"] = tokens * activation_bytes_per_token(
            facts, w, tp, rank, inputs.adapter, inputs.lora_rank, inputs.device_kind
        )
        components["attention_mask"] = facts.layers * tokens * tokens * w
        components["logits"] = tokens * shape.vocab * (w + 8)

    components["overhead"] = _overhead_bytes(inputs.device_kind, tp)
    return components


def _overhead_bytes(device_kind: str, tp: int) -> int:
    if device_kind == "cpu":
        # NOTE: gloo's buffers for tp > 1 on the CPU are not planned.
        return CPU_WORKER_RUNTIME_BYTES
    return CUDA_CONTEXT_BYTES + (NCCL_BYTES if tp > 1 else 0)


# ---------------------------------------------------------------------------------------
# Formula, source and calibration of each component


def _notes(facts: ArchitectureFacts, inputs: PlanInputs, rank: int) -> dict[str, ComponentNote]:
    w = dtype_bytes(inputs.weight_dtype)
    tp = inputs.tp
    shape = _rank_shape(facts, tp, rank)
    weights_from = (
        "tensor shapes in the folder's safetensors headers"
        if facts.weights_source == "safetensors"
        else f"tensor shapes built from config.json as transformers builds {facts.architecture}"
    )
    tokens = inputs.max_batch_size
    per_token = activation_bytes_per_token(
        facts, w, tp, rank, inputs.adapter, inputs.lora_rank, inputs.device_kind
    )
    notes = {
        "weights": ComponentNote(
            f"{facts.weight_elements_per_rank(tp)[rank]:,} parameters on rank {rank} x {w} bytes ({inputs.weight_dtype})",
            f"{weights_from}; tp splits attention heads, MLP width and vocabulary, replicates norms "
            "and K/V heads beyond their count",
            "exact",
        ),
        "adapter": ComponentNote(
            f"{inputs.lora_rank} (LoRA r) x (in + out) of 7 linear layers x {facts.layers} layers x 4 bytes",
            "peft LoRA on all linear layers except lm_head; peft casts adapters to fp32 by default",
            "exact",
        ),
        "value_head": ComponentNote(
            f"({facts.hidden} hidden + 1 bias) x 4 bytes",
            "torch.nn.Linear(hidden, 1) on the last hidden state, float32",
            "exact",
        ),
        "kv_cache": ComponentNote(
            f"{inputs.kv_cache_len} tokens x 2 (K and V) x {facts.layers} layers x "
            f"{facts.kv_heads_on_rank(tp, rank)} KV heads x {facts.head_dim} head_dim x {w} bytes",
            "one K and one V vector per KV head, layer and token, in the weight dtype",
            "exact",
        ),
        "gradients": ComponentNote(
            "trainable parameters x 4 bytes (value head included for scoring models)",
            "the engine's MasterWeightsAdamW turns each 16-bit gradient into an fp32 gradient on the "
            "master copy before the step; fp32 parameters (adapters, CPU weights) keep fp32 gradients",
            "exact",
        ),
        "optimizer_state": ComponentNote(
            "trainable parameters x 2 (exp_avg, exp_avg_sq) x 4 bytes",
            "AdamW's two fp32 moments per parameter. The step's temporaries are not counted: "
            "torch's default foreach AdamW on CUDA copies exp_avg_sq once more (4 bytes per "
            "parameter) while the activations, larger for most batch sizes, are already freed",
            "exact",
        ),
        "master_weights": ComponentNote(
            "16-bit trainable parameters x 4 bytes",
            "the engine's MasterWeightsAdamW keeps an fp32 copy of each 16-bit parameter for AdamW",
            "exact",
        ),
        "activations": ComponentNote(
            f"{tokens} tokens x {per_token:,} bytes/token, summed over {facts.layers} layers of RMSNorm, "
            f"attention ({shape.q_dim} query width on this rank) and MLP ({shape.intermediate} wide) "
            "saved tensors"
            + (" plus the LoRA inputs (fp32 copy and dropout mask)" if inputs.adapter else ""),
            "tensors autograd saves in HF Llama/Qwen decoder layers with sdpa attention and no "
            "activation checkpointing (activation_bytes_per_token); K and V expanded to all query "
            "heads as HF does when a packing mask is passed. Matches autograd's saved tensors of "
            "small models on the CPU (test_planner_activations.py); not yet measured on a GPU",
            "estimate",
        ),
        "attention_mask": ComponentNote(
            f"{facts.layers} layers x {tokens} x {tokens} tokens x {w} bytes",
            "a micro-batch that packs several sequences gets a block-diagonal boolean mask, which "
            "sdpa converts to a float bias and saves for backward in every layer; a single sequence "
            "needs none, so this is an upper bound",
            "estimate",
        ),
        "logits": ComponentNote(
            f"{tokens} tokens x {shape.vocab} vocab x ({w} model-dtype logits + 4 fp32 "
            "log-probabilities + 4 fp32 gradient)",
            "lm_head output, the fp32 log-softmax cross-entropy saves, and its gradient in backward",
            "estimate",
        ),
        "overhead": _overhead_note(inputs.device_kind, tp),
    }
    return notes


def _overhead_note(device_kind: str, tp: int) -> ComponentNote:
    if device_kind == "cpu":
        return ComponentNote(
            f"worker runtime {CPU_WORKER_RUNTIME_BYTES // MIB} MiB",
            "RSS of a worker process with Python, torch, transformers and peft loaded and no model "
            "tensors yet, measured on Linux x86_64 with the fork server start method; a worker "
            "started as a fresh interpreter measured about 780 MiB",
            "estimate",
        )
    nccl = (
        f" + NCCL {NCCL_BYTES // MIB} MiB (2 ring neighbours x {NCCL_CHANNELS} channels x "
        f"{NCCL_BUFFER_BYTES // MIB} MiB NCCL_BUFFSIZE)"
        if tp > 1
        else ""
    )
    stand_in = (
        "; a virtual device stands in for a GPU, so it plans the same" if device_kind == "virtual" else ""
    )
    return ComponentNote(
        f"CUDA context {CUDA_CONTEXT_BYTES // MIB} MiB{nccl}",
        "CUDA context with cuBLAS workspace is typically 300-600 MiB on recent drivers; NCCL buffers "
        f"from its default buffer size and channel count{stand_in}",
        "estimate",
    )
