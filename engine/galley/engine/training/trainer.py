"""The training side of a ``spawn_train`` spawn: queued samples, micro-batches, AdamW steps.

Flow of one optimizer step:

1. Each ``train_*`` call renders its threads, checks its arguments and queues one sample.
   A sample longer than ``max_batch_size`` tokens (a DPO or ranking pair counts both
   threads) is dropped, logged and counted in the next step's ``samples_dropped``.
2. Once the queued samples of one dropout mode reach ``max_batch_size`` tokens, they are
   packed into micro-batches (``packing.py``). Every micro-batch but the least filled one
   then runs forward and backward at once, while the least filled one waits for more
   samples. Samples queued by concurrent calls (``asyncio.gather`` in a recipe) therefore
   share micro-batches.
3. ``optim_step`` runs what is left, divides the summed gradients by the number of samples
   (the step minimizes the mean sample loss, see ``losses.py``), clips them to
   ``max_grad_norm``, applies AdamW and zeroes the gradients.

A Trainer is not thread-safe: the worker calls it from one thread.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from galley.engine.errors import InvalidRequest, OpFailed
from galley.engine.training import samples as sample_builders
from galley.engine.training.checkpoint import (
    prepare_folder,
    read_metadata,
    save_weights,
    write_metadata,
)
from galley.engine.training.forward import ModelParts, forward_packed, training_mode
from galley.engine.training.optimizer import (
    OPTIMIZER_FILE,
    MasterWeightsAdamW,
    load_optimizer,
    save_optimizer,
)
from galley.engine.training.packing import Sample, pack_first_fit_decreasing
from galley.engine.training.reference import FrozenPolicy
from galley.engine.training.scoring import RenderFunction, SequenceScorer, render_sequence

logger = logging.getLogger("galley.engine.training")


class NonFiniteGradientError(OpFailed):
    """An optimizer step met a nan or inf gradient and ``skip_nan_gradients`` was off."""


@dataclass
class TrainableModel:
    """A loaded model as the trainer needs it."""

    # A transformers causal LM, or a peft PeftModel around one (then only the adapter trains).
    module: nn.Module
    tokenizer: Any
    # Linear(hidden, 1) on the last hidden state, for scoring models, trained with the model.
    scalar_head: nn.Linear | None = None
    # Registry key of the base model an adapter sits on. Written to galley.json on save.
    base_key: str | None = None


@dataclass
class StepAccumulator:
    """Totals over the samples trained since the previous optimizer step."""

    samples: int = 0
    tokens: int = 0
    weighted_tokens: int = 0
    micro_batches: int = 0
    dropped: int = 0
    longest_dropped: int = 0
    loss_sum: float = 0.0
    loss_sums: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: Counter[str] = field(default_factory=Counter)
    nonfinite: Counter[str] = field(default_factory=Counter)

    def add(self, sample: Sample, loss: float) -> None:
        self.samples += 1
        self.tokens += sample.num_tokens
        self.weighted_tokens += sample.num_weighted_tokens
        self.loss_sum += loss
        self.loss_sums[sample.kind] += loss
        self.counts[sample.kind] += 1
        if not math.isfinite(loss):
            self.nonfinite[sample.kind] += 1

    def describe_losses(self) -> str:
        parts = []
        for kind, count in sorted(self.counts.items()):
            bad = self.nonfinite.get(kind, 0)
            suffix = f", {bad} with a non-finite loss" if bad else ""
            parts.append(f"{kind} ({count} samples{suffix})")
        return ", ".join(parts) or "none"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Trainer:
    """Training ops of one spawn. Each public method is one op of the worker's RPC.

    NOTE: the whole model must live in this process (tp=1). Tensor-parallel training, with
    one shard per rank, is not implemented here.
    """

    def __init__(
        self,
        model: TrainableModel,
        max_batch_size: int,
        render: RenderFunction | None = None,
    ):
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise InvalidRequest(f"max_batch_size is {max_batch_size!r}; pass a positive number of tokens")
        if render is None:
            from galley.engine.threads import render_thread

            render = partial(render_thread, model.tokenizer)

        self.model = model
        self.max_batch_size = max_batch_size
        self.render = render
        self.parts = ModelParts.from_module(model.module, model.scalar_head)
        self.optimizer = MasterWeightsAdamW(self._trainable_parameters())
        self.scorer = SequenceScorer(self.parts, render, max_tokens_per_forward=max_batch_size)

        self._queue: list[Sample] = []
        self._arrivals = 0
        self._pending = StepAccumulator()
        self._step = 0

    def _trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        named = [(n, p) for n, p in self.model.module.named_parameters() if p.requires_grad]
        seen = {id(p) for _, p in named}
        head = self.model.scalar_head
        if head is not None:
            named += [
                (f"value_head.{n}", p)
                for n, p in head.named_parameters()
                if p.requires_grad and id(p) not in seen
            ]
        return named

    # -- train_* ops ----------------------------------------------------------------------

    def train_language_modelling(self, thread: dict[str, Any]) -> dict[str, Any]:
        return self._add(sample_builders.language_modelling(self._sequence(thread)))

    def train_mse(self, thread: dict[str, Any], target: float) -> dict[str, Any]:
        self._require_value_head("train_mse")
        return self._add(sample_builders.mse(self._sequence(thread), target))

    def train_mse_per_token(self, thread: dict[str, Any], targets: Sequence[float]) -> dict[str, Any]:
        self._require_value_head("train_mse_per_token")
        return self._add(sample_builders.mse_per_token(self._sequence(thread), targets))

    def train_ranking(self, pos: dict[str, Any], neg: dict[str, Any]) -> dict[str, Any]:
        self._require_value_head("train_ranking")
        return self._add(sample_builders.ranking(self._sequence(pos), self._sequence(neg)))

    def train_dpo(
        self,
        pos: dict[str, Any],
        neg: dict[str, Any],
        ref_logprobs_pos: float,
        ref_logprobs_neg: float,
        beta: float,
    ) -> dict[str, Any]:
        sample = sample_builders.dpo(
            self._sequence(pos), self._sequence(neg), ref_logprobs_pos, ref_logprobs_neg, beta
        )
        return self._add(sample)

    def train_ppo(
        self,
        thread: dict[str, Any],
        trajectory_logprobs: Sequence[float],
        advantages: float | Sequence[float],
        clip_range: float,
    ) -> dict[str, Any]:
        sample = sample_builders.ppo(self._sequence(thread), trajectory_logprobs, advantages, clip_range)
        return self._add(sample)

    def train_grpo(
        self,
        thread: dict[str, Any],
        trajectory_logprobs: Sequence[float],
        reference_logprobs: Sequence[float],
        advantages: float | Sequence[float],
        clip_range: float,
        kl_beta: float,
    ) -> dict[str, Any]:
        sample = sample_builders.grpo(
            self._sequence(thread), trajectory_logprobs, reference_logprobs, advantages, clip_range, kl_beta
        )
        return self._add(sample)

    def _sequence(self, thread: dict[str, Any]):
        return render_sequence(self.render, thread)

    def _require_value_head(self, op: str) -> None:
        if self.parts.scalar_head is None:
            raise InvalidRequest(
                f"{op} trains a value head, and this spawn has none; "
                f"build it with .into_scoring_model() before spawn_train"
            )

    # -- queue and micro-batches ----------------------------------------------------------

    @property
    def queued_samples(self) -> int:
        """Samples added but not yet run as part of a micro-batch."""
        return len(self._queue)

    def flush(self) -> None:
        """Run the forward and backward passes of every queued sample now.

        ``optim_step`` does this itself. Gradients stay accumulated until it runs.
        """
        self._run_queued(final=True)

    def _add(self, sample: Sample) -> dict[str, Any]:
        tokens = sample.num_tokens
        if tokens > self.max_batch_size:
            self._drop(sample)
            return {"tokens": tokens, "dropped": True}

        sample.index = self._arrivals
        self._arrivals += 1
        self._queue.append(sample)
        self._run_queued(final=False)
        return {"tokens": tokens, "dropped": False}

    def _drop(self, sample: Sample) -> None:
        pending = self._pending
        if pending.dropped == 0:
            logger.warning(
                "%s sample of %d tokens dropped: longer than max_batch_size=%d; "
                "further drops before the next optim_step are only counted",
                sample.kind,
                sample.num_tokens,
                self.max_batch_size,
            )
        pending.dropped += 1
        pending.longest_dropped = max(pending.longest_dropped, sample.num_tokens)

    def _run_queued(self, final: bool) -> None:
        """Run queued samples as micro-batches: all of them if ``final``, else only full ones."""
        for dropout in (True, False):
            group = [s for s in self._queue if s.dropout == dropout]
            if not group:
                continue
            if not final and sum(s.num_tokens for s in group) < self.max_batch_size:
                continue

            batches = pack_first_fit_decreasing(group, self.max_batch_size)
            if not final and len(batches) > 1:
                # The least filled micro-batch waits for the samples of later calls.
                least = min(range(len(batches)), key=lambda i: sum(s.num_tokens for s in batches[i]))
                batches.pop(least)
            for batch in batches:
                self._run_micro_batch(batch, dropout)
                ran = {id(s) for s in batch}
                self._queue = [s for s in self._queue if id(s) not in ran]

    def _run_micro_batch(self, batch: list[Sample], dropout: bool) -> None:
        sequences = [sequence for sample in batch for sequence in sample.sequences]
        logprobs_for = [sample.needs_logprobs for sample in batch for _ in sample.sequences]
        values_for = [sample.needs_values for sample in batch for _ in sample.sequences]
        try:
            with torch.enable_grad(), training_mode(self.parts.module, dropout):
                outputs = forward_packed(
                    self.parts,
                    sequences,
                    logprobs_for=logprobs_for,
                    values_for=values_for,
                    max_tokens=self.max_batch_size,
                )
                sample_losses = []
                start = 0
                for sample in batch:
                    end = start + len(sample.sequences)
                    sample_losses.append(sample.loss(outputs[start:end]))
                    start = end
                stacked = torch.stack(sample_losses)
                stacked.sum().backward()
        except Exception as error:
            kinds = ", ".join(sorted({s.kind for s in batch}))
            self._discard_step()
            raise OpFailed(
                f"a training micro-batch of {len(batch)} samples ({kinds}, "
                f"{sum(s.num_tokens for s in batch)} tokens) failed: {error}. "
                f"The gradients accumulated since the last optim_step were discarded"
            ) from error

        self._pending.micro_batches += 1
        for sample, loss in zip(batch, stacked.detach().float().cpu().tolist(), strict=True):
            self._pending.add(sample, loss)

    def _discard_step(self) -> None:
        self._queue = []
        self._pending = StepAccumulator()
        self.optimizer.zero_grad()

    # -- optimizer ------------------------------------------------------------------------

    def optim_step(
        self,
        lr: float,
        wd: float = 0.0,
        max_grad_norm: float | None = 1.0,
        skip_nan_gradients: bool = False,
    ) -> dict[str, Any]:
        """Apply one AdamW update from the gradients of every sample since the last step.

        Returns the step's statistics. Raises NonFiniteGradientError on a nan or inf
        gradient, unless ``skip_nan_gradients`` is set: then the update is skipped and reported.
        """
        _check_step_arguments(lr, wd, max_grad_norm)
        self.flush()
        pending, self._pending = self._pending, StepAccumulator()

        stats: dict[str, Any] = {
            "step": self._step,
            "loss": None,
            "losses": {},
            "grad_norm": 0.0,
            "samples": pending.samples,
            "tokens": pending.tokens,
            "weighted_tokens": pending.weighted_tokens,
            "micro_batches": pending.micro_batches,
            "samples_dropped": pending.dropped,
            "longest_dropped_tokens": pending.longest_dropped,
            "lr": lr,
            "wd": wd,
            "skipped": False,
        }
        if pending.samples == 0:
            self.optimizer.zero_grad()
            logger.warning(
                "optim_step %d skipped: no samples were trained since the last step (%d dropped as too long)",
                self._step + 1,
                pending.dropped,
            )
            return stats | {"skipped": True, "skip_reason": "no samples"}

        self.optimizer.gather_gradients(1.0 / pending.samples)
        grad_norm = self.optimizer.clip_gradients(max_grad_norm)
        loss = pending.loss_sum / pending.samples
        stats |= {
            "loss": _finite_or_none(loss),
            "losses": {k: _finite_or_none(v / pending.counts[k]) for k, v in pending.loss_sums.items()},
            "grad_norm": _finite_or_none(grad_norm),
        }

        if not (math.isfinite(grad_norm) and math.isfinite(loss)):
            self.optimizer.zero_grad()
            reason = (
                f"non-finite gradient at optim step {self._step + 1} (grad_norm={grad_norm}, loss={loss}); "
                f"losses in this step: {pending.describe_losses()}"
            )
            if not skip_nan_gradients:
                raise NonFiniteGradientError(
                    f"{reason}. The step's gradients were discarded and the weights are unchanged. "
                    f"Check those samples' inputs (advantages, reference logprobs, targets) or lower lr, "
                    f"or pass skip_nan_gradients=True to skip such steps"
                )
            logger.warning("%s; update skipped (skip_nan_gradients=True)", reason)
            return stats | {"skipped": True, "skip_reason": "non-finite gradient"}

        self.optimizer.step(lr, wd)
        self.optimizer.zero_grad()
        self._step += 1
        stats["step"] = self._step
        logger.info(
            "optim step %d: loss %.4f, grad_norm %.4f, samples %d, tokens %d, dropped %d, lr %g",
            self._step,
            loss,
            grad_norm,
            pending.samples,
            pending.tokens,
            pending.dropped,
            lr,
        )
        return stats

    def get_optim_step(self) -> dict[str, int]:
        return {"step": self._step}

    def set_optim_step(self, step: int) -> dict[str, int]:
        """Set the step counter, for example to resume a learning-rate schedule."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InvalidRequest(f"set_optim_step: step is {step!r}; pass a non-negative integer")
        self._step = step
        return {"step": self._step}

    # -- save, resume, clone --------------------------------------------------------------

    def save(self, folder: str | Path, model_name: str, inference_only: bool = True) -> dict[str, Any]:
        """Write the model to ``folder`` and return the contents of its galley.json.

        ``inference_only=False`` also writes the AdamW state, so that a training spawn of the
        saved model resumes it (see :meth:`load_optimizer_state`). Samples queued but not yet
        stepped are not part of the saved weights.
        """
        folder = Path(folder)
        prepare_folder(folder)
        kind = save_weights(self.parts, self.model.tokenizer, folder)
        optimizer_file = None if inference_only else save_optimizer(self.optimizer, folder)
        metadata = {
            "kind": kind,
            "scoring": self.parts.scalar_head is not None,
            "base_key": self.model.base_key if kind == "adapter" else None,
            "optim_step": self._step,
            "optimizer": optimizer_file,
        }
        write_metadata(folder, metadata)
        logger.info("saved %s model %r to %s at optim step %d", kind, model_name, folder, self._step)
        return metadata

    def load_optimizer_state(self, folder: str | Path) -> None:
        """Resume the AdamW state and step counter that ``save(inference_only=False)`` wrote."""
        folder = Path(folder)
        metadata = read_metadata(folder)
        if metadata.get("optimizer") != OPTIMIZER_FILE:
            raise InvalidRequest(
                f"{folder} has no optimizer state: it was saved with inference_only=True; "
                f"save with inference_only=False to resume training with its optimizer"
            )
        try:
            load_optimizer(self.optimizer, folder / OPTIMIZER_FILE)
        except ValueError as error:
            raise InvalidRequest(str(error)) from None
        self._step = int(metadata.get("optim_step") or 0)

    def clone_frozen(self) -> FrozenPolicy:
        """Snapshot the current weights as a frozen reference policy (``clone_inf``)."""
        return FrozenPolicy(self.parts, self.render, self.max_batch_size, self._trainable_parameters())


def _check_step_arguments(lr: float, wd: float, max_grad_norm: float | None) -> None:
    if not (math.isfinite(lr) and lr >= 0):
        raise InvalidRequest(f"optim_step: lr is {lr}; pass a non-negative learning rate such as 1e-5")
    if not (math.isfinite(wd) and wd >= 0):
        raise InvalidRequest(f"optim_step: wd is {wd}; pass a non-negative weight decay such as 0.0 or 0.01")
    if max_grad_norm is not None and not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise InvalidRequest(
            f"optim_step: max_grad_norm is {max_grad_norm}; pass a positive norm such as 1.0, or None to skip clipping"
        )
