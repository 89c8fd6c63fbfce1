"""Wire format of the engine's WebSocket RPC, shared by the engine and the SDK.

Transport: one JSON text frame per message on ``ws://127.0.0.1:PORT/``. The HTTP upgrade
request carries ``Authorization: Bearer <token>``, and the engine rejects any other upgrade
with HTTP 401, so no WebSocket opens. The recipe runner may also send ``X-Galley-Run-Id``
and ``X-Galley-Recipe-Hash``, which become the lineage of models the session saves.
One connection is one session: the spawns it creates belong to it. When it closes, its
inference spawns are kept for the keep-warm TTL (an identical spawn of a later session gets
one back, ``SpawnResult.reused``), and its training spawns are released at once.

A client sends a ``Request``; the engine replies to each with a ``Response`` that carries the
same ``id`` and either ``result`` or ``error``. Frames without an ``id`` are ``Event``s pushed
by the engine (telemetry, after ``subscribe``).

This module imports no torch, so recipe processes can use it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1

# Defaults of ``client.model(...)`` for parameters that neither the call nor the model's
# registry entry sets.
DEFAULT_KV_CACHE_LEN = 131072
DEFAULT_TOKENS_TO_GENERATE = 2048
DEFAULT_TP = 1

MODEL_REGISTRY_SCHEME = "model_registry://"


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------
# Frames


class Request(WireModel):
    id: int
    method: str
    params: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(WireModel):
    # One of ERROR_TYPES; the SDK raises the matching exception class.
    type: str
    message: str
    data: dict[str, Any] | None = None


class Response(WireModel):
    id: int
    result: Any = None
    error: ErrorBody | None = None


class Event(WireModel):
    event: Literal["telemetry", "spawn", "log"]
    data: dict[str, Any]


ERROR_TYPES = (
    "invalid_request",  # params failed validation; message names the field and the value
    "not_found",  # unknown spawn name, model key or method
    "spawn_refused",  # the plan does not fit, or tp is invalid; data contains the plan and advice
    "model_error",  # the model folder or its config cannot be loaded
    "op_failed",  # an op raised inside the worker; message is the worker's error
    "worker_died",  # the spawn's process exited; the spawn is gone
    "internal",  # a bug in the engine; message points at the engine log
)


# ---------------------------------------------------------------------------------------
# Threads on the wire. Roles are system, user, assistant and tool.


class StringThreadWire(WireModel):
    kind: Literal["string"] = "string"
    turns: list[tuple[str, str]]
    # One training weight per turn; None means the default (assistant turns weighted 1.0).
    weights: list[float] | None = None
    metadata: dict[str, Any] | None = None


class TokenizedThreadWire(WireModel):
    kind: Literal["tokens"] = "tokens"
    turns: list[tuple[str, list[int]]]
    weights: list[float] | None = None
    metadata: dict[str, Any] | None = None


AnyThreadWire = StringThreadWire | TokenizedThreadWire


class Sampling(WireModel):
    # temperature 0 (or None with no default in the view) means greedy decoding.
    temperature: float | None = None
    top_p: float | None = None
    max_gen_len: int | None = None
    min_gen_len: int | None = None
    seed: int | None = None


# ---------------------------------------------------------------------------------------
# Methods


class ModelSpec(WireModel):
    """What ``client.model(...)`` and its builder methods recorded.

    ``None`` means the recipe did not set it: the engine takes the model's registry default,
    then the module defaults above.
    """

    path: str
    kv_cache_len: int | None = None
    tokens_to_generate: int | None = None
    tp: int | None = None
    # None: .with_adapter() was not called. True/False: called with that value.
    use_adapter: bool | None = None
    scoring: bool = False


class SpawnParams(WireModel):
    name: str
    kind: Literal["inference", "train"]
    model: ModelSpec
    max_batch_size: int | None = None  # tokens per training micro-batch; train only


class SpawnResult(WireModel):
    name: str
    kind: Literal["inference", "train"]
    model_key: str
    tp: int
    kv_cache_len: int
    tokens_to_generate: int
    adapter: bool
    scalar: bool
    devices: list[str]
    # Planned bytes per rank by component, if the planner ran.
    plan: dict[str, Any] | None = None
    reused: bool = False  # an identical kept inference spawn was handed back


class OpParams(WireModel):
    spawn: str
    op: str
    args: dict[str, Any] = Field(default_factory=dict)


class DeallocParams(WireModel):
    spawn: str


class ReleaseParams(WireModel):
    """End a spawn of any session by its id (``SpawnTelemetry.id``), e.g. from the workbench."""

    spawn_id: str


class CancelParams(WireModel):
    """Stop an earlier request of this session, by its request id. There is no reply to the
    cancelled request. A generate still waiting or decoding gives up its KV cache room at the
    next scheduler step; other ops run to their end. The result is ``{"cancelled": bool}``,
    False when the request had already finished."""

    request: int


class PlanParams(WireModel):
    """Plan a spawn without starting it (``galley run --dry-run``)."""

    name: str
    kind: Literal["inference", "train"]
    model: ModelSpec
    max_batch_size: int | None = None


class SubscribeParams(WireModel):
    topics: list[Literal["telemetry"]] = Field(default_factory=lambda: ["telemetry"])


# Method name -> params model. Methods with no params take {}.
METHODS: dict[str, type[WireModel] | None] = {
    "health": None,
    "session_info": None,
    "spawn": SpawnParams,
    "op": OpParams,
    "dealloc": DeallocParams,
    "release": ReleaseParams,
    "cancel": CancelParams,
    "plan": PlanParams,
    "list_spawns": None,
    "devices": None,
    "subscribe": SubscribeParams,
}


# ---------------------------------------------------------------------------------------
# Ops (OpParams.op) and their args. Results are plain JSON objects, listed beside each.
#
#   generate            {thread: StringThreadWire, sampling: Sampling}
#                       -> {completion: str, completion_ids: [int],
#                           finish_reason: "eos"|"length"|"kv_cache", prompt_tokens: int,
#                           kv_cache_len: int (only with "kv_cache": the cache size that ended
#                           the generation before max_gen_len, prompt included)}
#   generate_tokens     {thread: AnyThreadWire, sampling: Sampling} -> same as generate
#   tokenize            {text: str} -> {ids: [int]}
#   detokenize          {ids: [int]} -> {text: str}
#   tokenize_thread     {thread: StringThreadWire} -> {thread: TokenizedThreadWire}
#   detokenize_thread   {thread: TokenizedThreadWire} -> {thread: StringThreadWire}
#   serialize_thread    {thread: AnyThreadWire} -> {ids: [int], image_tokens: [], weights: [float]}
#   logprobs            {thread: AnyThreadWire} -> {logprob: float}
#   logprobs_per_token  {thread: AnyThreadWire} -> {logprobs: [float]}
#   raw_logprobs        {ids: [int]} -> {logprobs: [float]}  (one per id after the first)
#   score               {thread: AnyThreadWire} -> {scores: [float]}
#   score_last_token    {thread: AnyThreadWire} -> {score: float}
#   train_*             (see the training module) -> {tokens: int, dropped: bool}
#   optim_step          {lr, wd, max_grad_norm, skip_nan_gradients} -> stats
#   get_optim_step      {} -> {step: int};  set_optim_step {step: int} -> {step: int}
#   save                {model_name: str, inference_only: bool} -> {key: str, path: str, name: str,
#                       key_note: str | None}  (key_note explains a key that differs from model_name)
#   clone_inf           {name: str} -> SpawnResult of the frozen copy, a new spawn named ``name``
#
# logprobs, logprobs_per_token and score cover the weighted tokens of the rendered thread
# (position t >= 1 with a positive weight); completion_ids never include the final EOS token.
#
# Results of the other methods:
#   health          -> {ok: true, protocol_version, pid, uptime_s}
#   session_info    -> {session, protocol_version, keep_warm_s, device_kind, spawns: [name]}
#   spawn           -> SpawnResult
#   dealloc         -> {name, released: true, pids: [int]}  (the processes have exited); for a
#                      name this session only planned, it gives back the planned bytes (pids: []);
#                      for a spawn whose worker died, it frees the name (pids: [], died: how
#                      the worker died, as in the worker_died error of ops on the name)
#   release         -> {id, name, session, released: true, pids: [int]}; ends a spawn of any
#                      session, whose owner then gets not_found on its next op
#   plan            -> {name, kind, model_key, tp, kv_cache_len, tokens_to_generate, max_batch_size,
#                       adapter, scalar, devices: [str], ranks: [{rank, device, planned_bytes,
#                       available_bytes}], held: [{spawn, device, bytes}], plan: Plan dict | null};
#                       raises what spawn would raise (spawn_refused with the planner's message and
#                       data). The plan reserves its bytes against this session's later plans until
#                       dealloc of its name or the session's end; "held" lists the earlier plans
#                       that were subtracted from the devices' free memory
#   list_spawns     -> {spawns: [SpawnTelemetry]} of every session
#   devices         -> {devices: [DeviceInfo]}
#   subscribe       -> {topics, interval_s}; then "telemetry" Events on this connection


# ---------------------------------------------------------------------------------------
# Registry records (docs/contracts.md). The control plane may add fields; they are ignored.


class ModelDefaults(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kv_cache_len: int | None = None
    tokens_to_generate: int | None = None
    tp: int | None = None


class ModelLineage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    parent_key: str | None = None
    run_id: str | None = None
    recipe_hash: str | None = None
    optim_step: int | None = None


class ModelRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str
    name: str
    kind: Literal["base", "full", "adapter", "scoring", "architecture"]
    path: str | None = None  # None for architecture-only entries
    base_key: str | None = None  # the base model of an adapter
    config: dict[str, Any] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict)
    defaults: ModelDefaults = Field(default_factory=ModelDefaults)
    lineage: ModelLineage = Field(default_factory=ModelLineage)


class NewModel(WireModel):
    """Body of ``POST /api/internal/models``, sent after ``save()`` wrote a folder."""

    key: str
    name: str
    path: str
    kind: Literal["full", "adapter", "scoring"]
    parent_key: str | None = None
    run_id: str | None = None
    recipe_hash: str | None = None
    optim_step: int | None = None
    adapter_base_key: str | None = None


# ---------------------------------------------------------------------------------------
# Telemetry (Event "telemetry", every 500 ms by default)


class ProcessMemory(WireModel):
    pid: int
    bytes: int
    spawn: str | None = None  # None: not a Galley worker
    galley: bool = False


class DeviceInfo(WireModel):
    id: str  # "cuda:0", "cpu", "virtual:3"
    kind: Literal["cuda", "cpu", "virtual"]
    index: int
    name: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    utilization: float | None = None  # percent, where the device reports it
    processes: list[ProcessMemory] = Field(default_factory=list)


class RankMemory(WireModel):
    rank: int
    device: str
    pid: int | None = None
    # Measured: NVML per-process bytes on CUDA, RSS on CPU; None before the worker reports.
    process_bytes: int | None = None
    torch_allocated: int | None = None
    torch_reserved: int | None = None
    torch_peak: int | None = None
    # Planned bytes by component name (weights, kv_cache, gradients, ...).
    plan: dict[str, int] | None = None


class SpawnTelemetry(WireModel):
    id: str
    name: str
    session: str
    kind: Literal["inference", "train"]
    model_key: str
    tp: int
    devices: list[str]
    ranks: list[RankMemory]
    state: Literal["loading", "ready", "busy", "kept", "failed", "released"]
    last_op: str | None = None
    op_counts: dict[str, int] = Field(default_factory=dict)
    tokens_per_second: float | None = None
    created_at: float
    # The resolved spawn configuration, so a client can see which defaults a spawn took.
    kv_cache_len: int | None = None
    tokens_to_generate: int | None = None
    max_batch_size: int | None = None


class Telemetry(WireModel):
    time: float
    devices: list[DeviceInfo]
    spawns: list[SpawnTelemetry]
