"""``InferenceModel`` and ``TrainingModel``: handles on a spawn, one awaited RPC per op.

Sampling views (``.temperature(t)`` and the like) are copies that share the spawn and send
their ``Sampling`` with each generation. ``dealloc()`` ends the spawn for every view of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

from galley.protocol import Sampling, SpawnResult, StringThreadWire, TokenizedThreadWire
from galley.sdk.errors import GalleyError
from galley.sdk.threads import AnyThread, StringThread, TokenizedThread, thread_to_wire

if TYPE_CHECKING:
    from galley.sdk.builder import ModelBuilder
    from galley.sdk.client import HarmonyClient

log = logging.getLogger("galley.sdk")


def spawn_event(info: SpawnResult) -> dict[str, Any]:
    return {"type": "spawn", "name": info.name, "kind": info.kind, "model_key": info.model_key}


class _Spawn:
    """State shared by every view of one spawn."""

    def __init__(self, client: HarmonyClient, name: str, builder: ModelBuilder, info: SpawnResult | None):
        self.client = client
        self.name = name
        self.builder = builder
        self.info = info  # None under a dry run: the spawn was planned, not started
        self.deallocated = False
        self.clones = 0  # clone_inf calls so far, for default clone names
        self.kv_cache_cut_logged = False  # a generation cut by the KV cache was logged
        self.dry_run_copy = False  # a frozen copy made under a dry run, which the engine never planned


class InferenceModel:
    """A spawned model. Every op is a coroutine; concurrent calls are batched by the engine."""

    def __init__(
        self,
        client: HarmonyClient,
        name: str,
        builder: ModelBuilder,
        info: SpawnResult | None,
        sampling: Sampling | None = None,
    ):
        self._spawn = _Spawn(client, name, builder, info)
        self._sampling = sampling or Sampling()

    @classmethod
    def _sharing(cls, spawn: _Spawn, sampling: Sampling) -> Self:
        view = object.__new__(cls)
        view._spawn = spawn
        view._sampling = sampling
        return view

    @property
    def name(self) -> str:
        return self._spawn.name

    @property
    def info(self) -> SpawnResult | None:
        """What the engine reported at spawn time: model key, devices, resolved parameters."""
        return self._spawn.info

    @property
    def sampling(self) -> Sampling:
        return self._sampling.model_copy()

    def __repr__(self) -> str:
        sampling = self._sampling.model_dump(exclude_none=True)
        return f"{type(self).__name__}({self.name!r}, sampling={sampling})"

    async def _op(self, op: str, args: dict[str, Any]) -> Any:
        if self._spawn.deallocated:
            raise GalleyError(f"spawn {self.name!r} was deallocated; spawn the model again to use it")
        return await self._spawn.client.op(self.name, op, args)

    def _sampling_args(self) -> dict[str, Any]:
        return self._sampling.model_dump(mode="json", exclude_none=True)

    # -- sampling views -------------------------------------------------------------------

    def _view(self, **changes: Any) -> Self:
        return type(self)._sharing(self._spawn, self._sampling.model_copy(update=changes))

    def temperature(self, temperature: float) -> Self:
        """Return a view that samples at ``temperature`` (0 is greedy decoding)."""
        return self._view(temperature=_number("temperature", temperature, minimum=0.0))

    def top_p(self, top_p: float) -> Self:
        """Return a view that samples from the smallest token set of probability ``top_p``."""
        value = _number("top_p", top_p, minimum=0.0)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        return self._view(top_p=value)

    def max_gen_len(self, max_gen_len: int) -> Self:
        """Return a view that stops each generation after ``max_gen_len`` new tokens."""
        return self._view(max_gen_len=_count("max_gen_len", max_gen_len, minimum=1))

    def min_gen_len(self, min_gen_len: int) -> Self:
        """Return a view that generates at least ``min_gen_len`` tokens before an end of turn."""
        return self._view(min_gen_len=_count("min_gen_len", min_gen_len, minimum=0))

    # -- generation -----------------------------------------------------------------------

    async def generate(self, thread: StringThread) -> StringThread:
        """Return ``thread`` with the model's reply appended as an assistant turn."""
        if not isinstance(thread, StringThread):
            raise TypeError(
                f"generate takes a StringThread, got {type(thread).__name__}; use generate_tokens for token ids"
            )
        result = await self._op(
            "generate", {"thread": thread_to_wire(thread), "sampling": self._sampling_args()}
        )
        self._check_finish(result)
        return thread._generated(result["completion"], result.get("finish_reason"))

    async def generate_tokens(self, thread: AnyThread) -> TokenizedThread:
        """Return the thread as token ids with the reply's ids appended as an assistant turn."""
        tokenized = await self.tokenize_thread(thread) if isinstance(thread, StringThread) else thread
        wire = thread_to_wire(tokenized)
        result = await self._op("generate_tokens", {"thread": wire, "sampling": self._sampling_args()})
        self._check_finish(result)
        return tokenized._generated(result["completion_ids"], result.get("finish_reason"))

    def _check_finish(self, result: dict[str, Any]) -> None:
        """Log the first generation of this spawn that the KV cache cut short of max_gen_len."""
        spawn = self._spawn
        if result.get("finish_reason") != "kv_cache" or spawn.kv_cache_cut_logged:
            return
        spawn.kv_cache_cut_logged = True
        info = spawn.info
        requested = self._sampling.max_gen_len or (info.tokens_to_generate if info else None)
        log.warning(
            "%s Later cuts on this spawn are not logged; the returned thread's finish_reason is 'kv_cache'.",
            _kv_cache_cut_message(spawn.name, result, requested, info.kv_cache_len if info else None),
        )

    async def generate_and_validate(
        self, thread: StringThread, pydantic_model: Any, max_parsing_retries: int = 1
    ) -> tuple[str, Any]:
        """Generate a JSON reply and validate it as ``pydantic_model``; return (completion, object).

        See ``galley.sdk.structured`` for how JSON is found and how retries are prompted.
        """
        from galley.sdk.structured import generate_and_validate

        return await generate_and_validate(self, thread, pydantic_model, max_parsing_retries)

    # -- tokens ---------------------------------------------------------------------------

    async def tokenize(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"tokenize takes a str, got {type(text).__name__}")
        return list((await self._op("tokenize", {"text": text}))["ids"])

    async def detokenize(self, ids: Sequence[int]) -> str:
        return (await self._op("detokenize", {"ids": _token_ids(ids)}))["text"]

    async def tokenize_thread(self, thread: StringThread) -> TokenizedThread:
        if not isinstance(thread, StringThread):
            raise TypeError(f"tokenize_thread takes a StringThread, got {type(thread).__name__}")
        result = await self._op("tokenize_thread", {"thread": thread_to_wire(thread)})
        return _with_metadata(
            TokenizedThread.from_wire(TokenizedThreadWire.model_validate(result["thread"])), thread
        )

    async def detokenize_thread(self, thread: TokenizedThread) -> StringThread:
        if not isinstance(thread, TokenizedThread):
            raise TypeError(f"detokenize_thread takes a TokenizedThread, got {type(thread).__name__}")
        result = await self._op("detokenize_thread", {"thread": thread_to_wire(thread)})
        return _with_metadata(
            StringThread.from_wire(StringThreadWire.model_validate(result["thread"])), thread
        )

    async def serialize_thread(self, thread: AnyThread) -> tuple[list[int], list[Any], list[float]]:
        """Render the thread with the chat template: (token ids, image tokens, weight per token)."""
        result = await self._op("serialize_thread", {"thread": thread_to_wire(thread)})
        return list(result["ids"]), list(result.get("image_tokens", [])), list(result["weights"])

    # -- likelihoods and scores -----------------------------------------------------------

    async def logprobs(self, thread: AnyThread) -> float:
        """Return the sum of the log-probabilities of the thread's weighted tokens."""
        return float((await self._op("logprobs", {"thread": thread_to_wire(thread)}))["logprob"])

    async def logprobs_per_token(self, thread: AnyThread) -> list[float]:
        """Return the log-probability of each weighted token."""
        return list((await self._op("logprobs_per_token", {"thread": thread_to_wire(thread)}))["logprobs"])

    async def raw_logprobs(self, ids: Sequence[int]) -> list[float]:
        """Return the log-probability of each token after the first, with no chat template."""
        return list((await self._op("raw_logprobs", {"ids": _token_ids(ids)}))["logprobs"])

    def is_scalar(self) -> bool:
        """Return whether the model has a scalar value head (built with ``.into_scoring_model()``)."""
        info = self._spawn.info
        return info.scalar if info is not None else self._spawn.builder.spec.scoring

    async def score(self, thread: AnyThread) -> list[float]:
        """Return the value head's score at each weighted token (scoring models only)."""
        self._check_scalar("score")
        return list((await self._op("score", {"thread": thread_to_wire(thread)}))["scores"])

    async def score_last_token(self, thread: AnyThread) -> float:
        """Return the value head's score at the thread's last token (scoring models only)."""
        self._check_scalar("score_last_token")
        return float((await self._op("score_last_token", {"thread": thread_to_wire(thread)}))["score"])

    def _check_scalar(self, op: str) -> None:
        if not self.is_scalar():
            raise GalleyError(
                f"{op} needs a scoring model, and spawn {self.name!r} has no value head; "
                f"build it with .into_scoring_model()"
            )

    # -- lifecycle ------------------------------------------------------------------------

    async def dealloc(self) -> None:
        """End the spawn and free its memory and name; later calls on any view of it raise.

        A spawn whose worker died is already gone, so its dealloc() only frees the name and logs the death.
        """
        spawn = self._spawn
        if spawn.deallocated:
            return
        # Under a dry run the engine reserves each planned spawn's memory for the later plans,
        # so dealloc() gives it back there too.
        if not spawn.dry_run_copy:
            result = await spawn.client.call("dealloc", {"spawn": spawn.name})
            died = result.get("died") if isinstance(result, dict) else None
            if died:
                log.warning(
                    "dealloc(): spawn %r had already ended (%s); the name %r is free to spawn again",
                    spawn.name,
                    died,
                    spawn.name,
                )
        spawn.deallocated = True

    async def load(self, path: str) -> None:
        # TODO: load new weights into a running spawn once the engine has an op for it.
        raise NotImplementedError(
            f"load({path!r}) is not supported by the engine yet; spawn the model from its "
            f"model_registry:// path instead"
        )

    def get_builder_args(self) -> dict[str, Any]:
        """Return the builder settings this spawn was made with (``ModelBuilder.to_python_dict``)."""
        return self._spawn.builder.to_python_dict()


class TrainingModel(InferenceModel):
    """A spawn that trains: ``train_*`` calls add gradients, ``optim_step`` applies them."""

    async def train_language_modelling(self, thread: AnyThread) -> dict[str, Any]:
        """Add the gradients of the weighted tokens' negative log-likelihood."""
        return await self._op("train_language_modelling", {"thread": thread_to_wire(thread)})

    async def train_mse(self, thread: AnyThread, target: float) -> dict[str, Any]:
        """Add the gradients of (last-token score - target)^2 (scoring models)."""
        args = {"thread": thread_to_wire(thread), "target": _number("target", target)}
        return await self._op("train_mse", args)

    async def train_mse_per_token(self, tokenized: AnyThread, targets: Sequence[float]) -> dict[str, Any]:
        """Add the gradients of the squared error of each weighted token's score (scoring models)."""
        args = {"thread": thread_to_wire(tokenized), "targets": _numbers("targets", targets)}
        return await self._op("train_mse_per_token", args)

    async def train_ranking(self, pos: AnyThread, neg: AnyThread) -> dict[str, Any]:
        """Add the gradients of -log sigmoid(score(pos) - score(neg)) (scoring models)."""
        args = {"pos": thread_to_wire(pos), "neg": thread_to_wire(neg)}
        return await self._op("train_ranking", args)

    async def train_dpo(
        self,
        pos: AnyThread,
        neg: AnyThread,
        ref_logprobs_pos: float,
        ref_logprobs_neg: float,
        beta: float,
    ) -> dict[str, Any]:
        """Add the DPO loss gradients, with the reference log-probabilities given."""
        args = {
            "pos": thread_to_wire(pos),
            "neg": thread_to_wire(neg),
            "ref_logprobs_pos": _number("ref_logprobs_pos", ref_logprobs_pos),
            "ref_logprobs_neg": _number("ref_logprobs_neg", ref_logprobs_neg),
            "beta": _number("beta", beta, minimum=0.0),
        }
        return await self._op("train_dpo", args)

    async def train_ppo(
        self,
        tokenized: AnyThread,
        trajectory_logprobs: Sequence[float],
        advantages: Sequence[float] | float,
        clip_range: float,
    ) -> dict[str, Any]:
        """Add the PPO clipped-surrogate gradients for one sampled trajectory."""
        args = {
            "thread": thread_to_wire(tokenized),
            "trajectory_logprobs": _numbers("trajectory_logprobs", trajectory_logprobs),
            "advantages": _number_or_numbers("advantages", advantages),
            "clip_range": _number("clip_range", clip_range, minimum=0.0),
        }
        return await self._op("train_ppo", args)

    async def train_grpo(
        self,
        tokenized: AnyThread,
        trajectory_logprobs: Sequence[float],
        reference_logprobs: Sequence[float],
        advantages: Sequence[float] | float,
        clip_range: float,
        kl_beta: float,
    ) -> dict[str, Any]:
        """Add the GRPO gradients: PPO clipping plus ``kl_beta`` times a KL term to the reference."""
        args = {
            "thread": thread_to_wire(tokenized),
            "trajectory_logprobs": _numbers("trajectory_logprobs", trajectory_logprobs),
            "reference_logprobs": _numbers("reference_logprobs", reference_logprobs),
            "advantages": _number_or_numbers("advantages", advantages),
            "clip_range": _number("clip_range", clip_range, minimum=0.0),
            "kl_beta": _number("kl_beta", kl_beta, minimum=0.0),
        }
        return await self._op("train_grpo", args)

    async def train_gspo(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError(
            "train_gspo is not supported by the engine yet; use train_grpo or train_ppo"
        )

    async def train_trust_region_mse(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError("train_trust_region_mse is not supported by the engine yet; use train_mse")

    async def optim_step(
        self, lr: float, wd: float, max_grad_norm: float, skip_nan_gradients: bool = False
    ) -> dict[str, Any]:
        """Apply the accumulated gradients with AdamW and return the step's statistics.

        The statistics include loss, grad_norm, samples, tokens and samples_dropped (samples
        longer than max_batch_size).
        """
        args = {
            "lr": _number("lr", lr, minimum=0.0),
            "wd": _number("wd", wd, minimum=0.0),
            "max_grad_norm": _number("max_grad_norm", max_grad_norm, minimum=0.0),
            "skip_nan_gradients": bool(skip_nan_gradients),
        }
        return dict(await self._op("optim_step", args))

    async def get_optim_step(self) -> int:
        return int((await self._op("get_optim_step", {}))["step"])

    async def set_optim_step(self, step: int) -> None:
        await self._op("set_optim_step", {"step": _count("step", step, minimum=0)})

    async def save(self, model_name: str, inference_only: bool = True) -> str:
        """Register the trained weights as a new registry model and return its key.

        The key is ``model_name`` in lowercase with each run of other characters than
        letters, digits, ".", "_" and "-" replaced by "-", plus "-2", "-3"... if it is taken;
        a key that differs from ``model_name`` is logged as a warning. The registry keeps
        ``model_name`` as the model's display name. ``inference_only=False`` also stores the
        optimizer state, so training can resume.
        """
        if not isinstance(model_name, str) or not model_name.strip():
            raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
        result = await self._op("save", {"model_name": model_name, "inference_only": bool(inference_only)})
        key = str(result["key"])
        if result.get("key_note"):
            # Registry keys are restricted, so "my model/v1" is stored as "my-model-v1".
            log.warning("save: %s", result["key_note"])
        self._spawn.client.emit_run_event(
            {"type": "artifact", "name": model_name, "kind": "model", "uri": f"model_registry://{key}"}
        )
        return key

    def inf(self) -> InferenceModel:
        """Return an inference view of this spawn: same weights, no new process."""
        return InferenceModel._sharing(self._spawn, self._sampling.model_copy())

    async def clone_inf(self, name: str | None = None) -> InferenceModel:
        """Spawn a frozen inference copy of the current weights (e.g. a reference policy).

        Without ``name``, clones are named ``<spawn>-ref``, then ``<spawn>-ref2`` and so on.
        """
        spawn = self._spawn
        spawn.clones += 1
        clone_name = name or (f"{spawn.name}-ref" if spawn.clones == 1 else f"{spawn.name}-ref{spawn.clones}")
        if spawn.client.dry_run:
            clone = InferenceModel(spawn.client, clone_name, spawn.builder, None)
            clone._spawn.dry_run_copy = True
            return clone
        info = SpawnResult.model_validate(await self._op("clone_inf", {"name": clone_name}))
        spawn.client.emit_run_event(spawn_event(info))
        return InferenceModel(spawn.client, info.name, spawn.builder, info, self._sampling.model_copy())


def _kv_cache_cut_message(
    name: str, result: dict[str, Any], requested: int | None, spawn_kv_cache_len: int | None
) -> str:
    """Explain a generation that the KV cache ended early: the spawn, the sizes and the fix."""
    prompt_tokens = result.get("prompt_tokens")
    generated = len(result.get("completion_ids") or [])
    cache = result.get("kv_cache_len")
    if isinstance(cache, int) and spawn_kv_cache_len is not None and cache < spawn_kv_cache_len:
        # A training spawn generates within its planned activation memory, below kv_cache_len.
        fix = "raise max_batch_size, which sizes a training spawn's generation cache, or generate with an inference spawn"
    elif isinstance(prompt_tokens, int) and requested:
        fix = f"spawn it with kv_cache_len >= {prompt_tokens + requested}, shorten the prompt or lower max_gen_len"
    else:
        fix = "spawn it with a larger kv_cache_len, shorten the prompt or lower max_gen_len"
    return (
        f"spawn {name!r}: generation stopped after {generated} of {requested} requested tokens because "
        f"the {prompt_tokens}-token prompt and the reply filled the KV cache (kv_cache_len={cache}); {fix}."
    )


# -- argument checks ----------------------------------------------------------------------


def _number(name: str, value: Any, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return float(value)


def _numbers(name: str, values: Sequence[float]) -> list[float]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of numbers, got {type(values).__name__}")
    return [_number(f"{name}[{i}]", value) for i, value in enumerate(values)]


def _number_or_numbers(name: str, value: Any) -> float | list[float]:
    return _number(name, value) if isinstance(value, int | float) else _numbers(name, value)


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _token_ids(ids: Sequence[int]) -> list[int]:
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise TypeError(f"token ids must be a list of ints, got {type(ids).__name__}")
    for token in ids:
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise TypeError(f"token ids must be non-negative ints, got {token!r}")
    return list(ids)


def _with_metadata(converted: AnyThread, original: AnyThread) -> Any:
    """Keep the original thread's metadata if the engine's copy dropped it."""
    if not converted.metadata and original.metadata:
        converted.metadata = dict(original.metadata)
    converted._finish_reason = original.finish_reason
    return converted
