"""Where a worker plugs in the training package and the generation scheduler.

- ``build_trainer``: ``galley.engine.training.Trainer`` around the loaded model (train spawns).
- ``main_view`` / ``frozen_view``: the inference ops' view of the model. Log-probabilities
  and scores come from the trainer's ``SequenceScorer``, so they equal what the losses use.
- ``build_generator``: the continuous-batching ``Scheduler`` of ``galley.engine.batching``,
  or one request at a time through transformers' ``generate`` when the scheduler does not
  support the model or ``GALLEY_GENERATOR=sequential`` is set.
- ``run_training_op``: the trainer's op dispatch, plus ``save`` which needs the folder the
  engine chose.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from typing import Any

from galley.engine.errors import InvalidRequest, OpFailed
from galley.engine.generation import SequentialGenerator
from galley.engine.modeling import LoadedModel
from galley.engine.ops import MAX_TOKENS_PER_FORWARD, ModelView
from galley.engine.spec import LoadSpec

log = logging.getLogger("galley.engine.worker")

TRAINING_UNAVAILABLE = (
    "training ops are not available: the galley.engine.training package is missing from this install"
)


def _training():
    try:
        import galley.engine.training as training
    except ImportError as error:
        raise OpFailed(f"{TRAINING_UNAVAILABLE} ({error})") from None
    return training


def build_trainer(loaded: LoadedModel, spec: LoadSpec) -> Any:
    training = _training()
    model = training.TrainableModel(
        module=loaded.module,
        tokenizer=loaded.tokenizer,
        scalar_head=loaded.value_head,
        base_key=spec.base_key,
    )
    assert spec.max_batch_size is not None, "the server checks max_batch_size of train spawns"
    trainer = training.Trainer(model, max_batch_size=spec.max_batch_size)
    if loaded.shards is not None:
        from galley.engine.tp import use_tensor_parallel_optimizer

        use_tensor_parallel_optimizer(trainer, loaded.shards)
    _resume_optimizer(trainer, spec)
    return trainer


def _resume_optimizer(trainer: Any, spec: LoadSpec) -> None:
    """Resume AdamW state saved with the model (``save(inference_only=False)``)."""
    import json
    from pathlib import Path

    metadata_file = Path(spec.model_path) / "galley.json"
    if spec.new_adapter or not metadata_file.is_file():
        return
    if json.loads(metadata_file.read_text()).get("optimizer"):
        trainer.load_optimizer_state(spec.model_path)
        log.info("resumed optimizer state from %s", spec.model_path)


def _scorer(loaded: LoadedModel, trainer: Any) -> Any:
    if trainer is not None:
        return trainer.scorer
    try:
        from galley.engine.training import SequenceScorer
        from galley.engine.training.forward import ModelParts
    except ImportError:
        return _UnavailableScorer()
    from functools import partial

    from galley.engine.threads import render_thread

    parts = ModelParts.from_module(loaded.module, loaded.value_head)
    return SequenceScorer(parts, partial(render_thread, loaded.tokenizer), MAX_TOKENS_PER_FORWARD)


class _UnavailableScorer:
    def __getattr__(self, name: str):
        raise OpFailed(
            f"{name} is not available: the galley.engine.training package is missing from this install"
        )


def main_view(loaded: LoadedModel, spec: LoadSpec, trainer: Any) -> ModelView:
    return ModelView(loaded, spec, _scorer(loaded, trainer))


def frozen_view(loaded: LoadedModel, spec: LoadSpec, trainer: Any) -> tuple[ModelView, Any]:
    """A frozen copy of the training model's current weights (``clone_inf``) and its generator."""
    frozen = trainer.clone_frozen()
    view = ModelView(loaded, spec, frozen, weights_context=frozen.weights)
    generator = SequentialGenerator(loaded.module, loaded.eos_ids, loaded.pad_id, spec.tokens_to_generate)
    return view, _in_lockstep(generator, loaded)


# ---------------------------------------------------------------------------------------
# Generation


class SchedulerGenerator:
    """The worker's generator interface on top of the batching ``Scheduler``."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self.in_flight = 0

    def submit(self, request, done) -> Future:
        """Queue ``request``; return its future, which the worker cancels when the client does."""
        future: Future = self.scheduler.add(request)
        self.in_flight += 1

        def finished(f: Future) -> None:
            self.in_flight -= 1
            if f.cancelled():
                done(OpFailed("the request was cancelled by the client"))
                return
            error = f.exception()
            done(error if error is not None else f.result())

        future.add_done_callback(finished)
        return future

    def has_work(self) -> bool:
        return self.in_flight > 0 or self.scheduler.has_work()

    def step(self) -> None:
        self.scheduler.step()

    def stats(self) -> Any:
        return self.scheduler.stats()


def build_generator(loaded: LoadedModel, spec: LoadSpec) -> Any:
    sequential = SequentialGenerator(
        loaded.module,
        loaded.eos_ids,
        loaded.pad_id,
        spec.tokens_to_generate,
        token_limit=len(loaded.tokenizer),
    )
    if os.environ.get("GALLEY_GENERATOR", "").lower() == "sequential":
        log.info("generation: one request at a time (GALLEY_GENERATOR=sequential)")
        return _in_lockstep(sequential, loaded)
    if spec.world_size > 1:
        log.info("generation: one request at a time (tensor-parallel ranks run requests in order)")
        return _in_lockstep(sequential, loaded)
    try:
        from galley.engine.batching.kv_cache import kv_bytes_per_token
        from galley.engine.batching.scheduler import Scheduler, check_model_supported
    except ImportError as error:
        log.info("generation: one request at a time (no batching scheduler: %s)", error)
        return sequential
    try:
        check_model_supported(loaded.module)
    except (TypeError, ValueError) as error:
        log.info("generation: one request at a time (%s)", error)
        return sequential
    kv_cache_len, cache_fix = spec.kv_cache_len, None
    if spec.generation_kv_bytes is not None:
        slots = max(1, spec.generation_kv_bytes // kv_bytes_per_token(loaded.module))
        if slots < kv_cache_len:
            kv_cache_len = slots
            cache_fix = (
                f"this training spawn generates within its planned activation memory, {slots} tokens "
                f"of KV cache; raise max_batch_size, or generate with an inference spawn"
            )
    scheduler = Scheduler(
        loaded.module,
        eos_token_ids=loaded.eos_ids,
        pad_token_id=loaded.pad_id,
        kv_cache_len=kv_cache_len,
        tokens_to_generate=spec.tokens_to_generate,
        token_limit=len(loaded.tokenizer),
        cache_fix=cache_fix,
    )
    log.info("generation: continuous batching within kv_cache_len=%d tokens", kv_cache_len)
    return SchedulerGenerator(scheduler)


def _in_lockstep(generator: Any, loaded: LoadedModel) -> Any:
    """Wrap a tensor-parallel rank's generator so that all ranks sample the same tokens."""
    if loaded.shards is None:
        return generator
    from galley.engine.tp import LockstepGenerator

    return LockstepGenerator(generator, loaded.device)


# ---------------------------------------------------------------------------------------
# Training ops


def run_training_op(trainer: Any, op: str, args: dict[str, Any]) -> dict[str, Any]:
    if op == "save":
        folder = args.get("folder")
        model_name = args.get("model_name")
        if not isinstance(folder, str) or not isinstance(model_name, str):
            raise InvalidRequest("save needs 'model_name'; the engine adds the folder")
        inference_only = bool(args.get("inference_only", True))
        from galley.engine.tp import TensorParallelAdamW, save_unsharded

        if isinstance(trainer.optimizer, TensorParallelAdamW):
            return save_unsharded(trainer, folder, model_name, inference_only=inference_only)
        return trainer.save(folder, model_name, inference_only=inference_only)
    training = _training()
    if op not in training.TRAINING_OPS:
        raise OpFailed(
            f"{op} is not implemented by this engine; available training ops: {', '.join(training.TRAINING_OPS)}"
        )
    return training.run_training_op(trainer, op, args)
