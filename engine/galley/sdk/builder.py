"""``ModelBuilder``: what ``client.model(...)`` and its chained methods record before a spawn.

Builders are immutable: each method returns a new builder, so one base builder can be
specialized several ways. Only values the recipe set are recorded (``ModelSpec`` keeps
None for the rest), and the engine fills those from the model's registry defaults.

Support of the later features:
- ``.with_draft(...)``, ``.tools(...)`` and non-empty ``.extra_params(...)`` are recorded,
  and spawning such a builder raises NotImplementedError, because the engine has no
  speculative decoding, tool rendering or extra engine parameters yet.
- ``.api_key(...)`` is accepted and not sent: registry models need no provider key, so
  the key only matters for external providers (``openai://``), which ``client.model``
  does not accept yet.
"""

from __future__ import annotations

import copy
import traceback
from typing import TYPE_CHECKING, Any

from galley.protocol import MODEL_REGISTRY_SCHEME, ModelSpec, PlanParams, SpawnParams, SpawnResult
from galley.sdk.config import parse_model_key
from galley.sdk.errors import SpawnRefused
from galley.sdk.models import InferenceModel, TrainingModel, spawn_event

if TYPE_CHECKING:
    from galley.sdk.client import HarmonyClient


class ModelBuilder:
    """A model spawn being configured; finish with ``spawn_inference`` or ``spawn_train``."""

    __slots__ = ("_client", "_spec", "_later")

    def __init__(self, client: HarmonyClient, spec: ModelSpec, later: dict[str, Any] | None = None):
        self._client = client
        self._spec = spec
        # Settings of later features, by builder method name.
        self._later: dict[str, Any] = dict(later or {})

    @classmethod
    def create(
        cls,
        client: HarmonyClient,
        path: str,
        *,
        kv_cache_len: int | None = None,
        tokens_to_generate: int | None = None,
    ) -> ModelBuilder:
        _check_registry_path(path)
        spec = ModelSpec(
            path=path,
            kv_cache_len=_positive_int_or_none("kv_cache_len", kv_cache_len),
            tokens_to_generate=_positive_int_or_none("tokens_to_generate", tokens_to_generate),
        )
        return cls(client, spec)

    @property
    def spec(self) -> ModelSpec:
        return self._spec.model_copy()

    @property
    def model_key(self) -> str:
        return parse_model_key(self._spec.path)

    def _with(self, *, later: dict[str, Any] | None = None, **spec_changes: Any) -> ModelBuilder:
        new_later = {**self._later, **(later or {})}
        return ModelBuilder(self._client, self._spec.model_copy(update=spec_changes), new_later)

    # -- configuration --------------------------------------------------------------------

    def tp(self, tp: int) -> ModelBuilder:
        """Split the model over ``tp`` devices (tensor parallelism)."""
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise ValueError(
                f"tp must be an int >= 1 (the number of devices to split the model over), got {tp!r}"
            )
        return self._with(tp=tp)

    def with_adapter(self, use_adapter: bool = True) -> ModelBuilder:
        """Train a LoRA adapter instead of the full weights (or, with False, insist on full weights)."""
        if not isinstance(use_adapter, bool):
            raise TypeError(f"use_adapter must be True or False, got {use_adapter!r}")
        return self._with(use_adapter=use_adapter)

    def into_scoring_model(self) -> ModelBuilder:
        """Put a scalar value head on the model: for reward and value models."""
        return self._with(scoring=True)

    def with_draft(self, path: str, num_draft_steps: int | None = None) -> ModelBuilder:
        """Record a draft model for speculative decoding (not supported by the engine yet)."""
        _check_registry_path(path)
        steps = _positive_int_or_none("num_draft_steps", num_draft_steps)
        return self._with(later={"with_draft": {"path": path, "num_draft_steps": steps}})

    def tools(self, tools: list[Any]) -> ModelBuilder:
        """Record tool definitions for tool calling (not supported by the engine yet)."""
        return self._with(later={"tools": copy.deepcopy(list(tools))})

    def api_key(self, api_key: str) -> ModelBuilder:
        """Record a provider API key; registry models ignore it."""
        if not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str, got {type(api_key).__name__}")
        return self._with(later={"api_key": api_key})

    def extra_params(self, **params: Any) -> ModelBuilder:
        """Record extra engine parameters (not supported by the engine yet)."""
        merged = {**self._later.get("extra_params", {}), **copy.deepcopy(params)}
        return self._with(later={"extra_params": merged})

    def to_python_dict(self) -> dict[str, Any]:
        """Return what this builder records; unset parameters are None. The API key is masked."""
        result: dict[str, Any] = self._spec.model_dump()
        for name, value in self._later.items():
            result[name] = "***" if name == "api_key" else copy.deepcopy(value)
        return result

    def __repr__(self) -> str:
        return f"ModelBuilder({self.to_python_dict()!r})"

    # -- spawning -------------------------------------------------------------------------

    async def spawn_inference(self, name: str) -> InferenceModel:
        """Start the model for inference under ``name`` (weights and KV cache)."""
        self._check_spawnable(name)
        if self._client.dry_run:
            await self._plan(name, "inference", None)
            return InferenceModel(self._client, name, self, None)
        params = SpawnParams(name=name, kind="inference", model=self._spec)
        info = SpawnResult.model_validate(await self._client.call("spawn", params))
        self._client.emit_run_event(spawn_event(info))
        return InferenceModel(self._client, name, self, info)

    async def spawn_train(self, name: str, max_batch_size: int) -> TrainingModel:
        """Start the model for training under ``name``.

        ``max_batch_size`` is the number of tokens in one training micro-batch; it sizes the
        activation memory, and a sample longer than it is dropped.
        """
        self._check_spawnable(name)
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(
                f"max_batch_size must be a positive int (tokens per micro-batch), got {max_batch_size!r}"
            )
        if self._client.dry_run:
            await self._plan(name, "train", max_batch_size)
            return TrainingModel(self._client, name, self, None)
        params = SpawnParams(name=name, kind="train", model=self._spec, max_batch_size=max_batch_size)
        info = SpawnResult.model_validate(await self._client.call("spawn", params))
        self._client.emit_run_event(spawn_event(info))
        return TrainingModel(self._client, name, self, info)

    def _check_spawnable(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"the spawn name must be a non-empty string, got {name!r}")
        unsupported = {
            "with_draft": "speculative decoding with a draft model",
            "tools": "tool definitions",
        }
        for method, feature in unsupported.items():
            if method in self._later:
                raise NotImplementedError(
                    f"spawn {name!r}: .{method}(...) is set, but the engine does not support {feature} yet; "
                    f"remove .{method}(...) from the builder"
                )
        if self._later.get("extra_params"):
            keys = ", ".join(sorted(self._later["extra_params"]))
            raise NotImplementedError(
                f"spawn {name!r}: .extra_params({keys}) is set, but the engine accepts no extra parameters yet; "
                f"remove .extra_params(...) from the builder"
            )

    async def _plan(self, name: str, kind: str, max_batch_size: int | None) -> None:
        """Print the engine's plan for this spawn; a refusal is printed and the dry run goes on.

        A dry run tells which spawns fit, so it plans every spawn up to the first
        compute call instead of stopping at the first one that does not fit.
        """
        from galley.sdk.dryrun import print_plan, print_refusal

        params = PlanParams(name=name, kind=kind, model=self._spec, max_batch_size=max_batch_size)  # type: ignore[arg-type]
        self._client.dry_run_planned += 1
        try:
            result = await self._client.call("plan", params)
        except SpawnRefused as refusal:
            self._client.dry_run_refused.append(name)
            self._client.dry_run_refusal_stacks.append(traceback.extract_stack())
            print_refusal(name, kind, refusal)
            return
        print_plan(result)


def _check_registry_path(path: str) -> None:
    if not isinstance(path, str):
        raise TypeError(f"the model path must be a str such as 'model_registry://qwen3-32b', got {path!r}")
    if path.startswith(MODEL_REGISTRY_SCHEME):
        parse_model_key(path)
        return
    if "://" in path:
        scheme = path.split("://", 1)[0]
        raise NotImplementedError(
            f"model path {path!r}: external providers ({scheme}://) are not supported yet; "
            f"use a registry model, {MODEL_REGISTRY_SCHEME}<key>"
        )
    raise ValueError(
        f"model path {path!r} must start with {MODEL_REGISTRY_SCHEME}; write {MODEL_REGISTRY_SCHEME}{path}"
    )


def _positive_int_or_none(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int or None (the registry default), got {value!r}")
    return value
