"""Frozen copies of a training spawn's policy, used as reference policies (``clone_inf``).

A frozen policy shares the training module and keeps only a snapshot of the trainable
parameters: the whole model for full fine-tuning, the adapter (and value head) for LoRA.
Around each of its forward passes the snapshot is swapped into the module and swapped back
afterwards, so later optimizer steps of the policy never reach it.

An adapter whose LoRA B matrices are all zero (a fresh adapter, before any step) adds
exactly nothing to the base model. Its frozen copy then runs with the adapter disabled
(peft's ``disable_adapter()``) and copies no adapter weight at all.

The swap is not thread-safe: the caller must run the policy's and the frozen copy's
forward passes one at a time, as a spawn's worker does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor, nn

from galley.engine.training.forward import ModelParts
from galley.engine.training.scoring import RenderFunction, SequenceScorer


def _is_lora_parameter(name: str) -> bool:
    return ".lora_" in name


def _adapter_is_identity(named_parameters: list[tuple[str, nn.Parameter]]) -> bool:
    lora_b = [p for name, p in named_parameters if ".lora_B." in name]
    return bool(lora_b) and all(not bool(p.detach().any()) for p in lora_b)


class FrozenPolicy(SequenceScorer):
    """A frozen snapshot of a policy that scores threads through the shared module."""

    def __init__(
        self,
        parts: ModelParts,
        render: RenderFunction,
        max_tokens_per_forward: int,
        trainable: list[tuple[str, nn.Parameter]],
    ):
        super().__init__(parts, render, max_tokens_per_forward, weights_context=self.weights)
        self.disables_adapter = _adapter_is_identity(trainable) and hasattr(parts.module, "disable_adapter")
        copied = [(n, p) for n, p in trainable if not (self.disables_adapter and _is_lora_parameter(n))]
        with torch.no_grad():
            self._snapshot: list[tuple[nn.Parameter, Tensor]] = [(p, p.detach().clone()) for _, p in copied]
        self.copied_names = [name for name, _ in copied]

    @property
    def snapshot_bytes(self) -> int:
        """Bytes held by the copied parameters."""
        return sum(t.numel() * t.element_size() for _, t in self._snapshot)

    @contextmanager
    def weights(self) -> Iterator[None]:
        """Run the shared module with the frozen weights inside the block.

        The worker also wraps generation from the frozen copy in this.
        """
        with ExitStack() as stack:
            if self.disables_adapter:
                stack.enter_context(self.parts.module.disable_adapter())  # type: ignore[operator]
            originals = [parameter.data for parameter, _ in self._snapshot]
            for parameter, frozen in self._snapshot:
                parameter.data = frozen
            try:
                yield
            finally:
                for (parameter, _), original in zip(self._snapshot, originals, strict=True):
                    parameter.data = original
