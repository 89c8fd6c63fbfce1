"""Inference ops that need one forward pass and no generation: log-probabilities and scores.

Every method takes a list, so the worker can serve several concurrent requests with one
call: the threads are packed into rows of at most ``max_tokens_per_forward`` tokens (a
longer thread runs alone), with no attention between threads.

Which tokens a result covers: ``logprobs_per_token`` and ``score`` return one value per
*weighted token* of the rendered thread, that is each position ``t >= 1`` with a positive
weight, in order. This is also the order in which ``train_ppo``, ``train_grpo`` and
``train_mse_per_token`` expect their per-token arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from galley.engine.errors import InvalidRequest
from galley.engine.training.forward import ModelParts, SequenceOutputs, forward_packed, training_mode
from galley.engine.training.packing import TokenSequence, group_sequences_by_tokens

# Renders a wire thread (a JSON dict) into an object with ``ids`` and ``weights`` lists.
RenderFunction = Callable[[dict[str, Any]], Any]


def render_sequence(render: RenderFunction, thread: dict[str, Any]) -> TokenSequence:
    rendered = render(thread)
    return TokenSequence(ids=list(rendered.ids), weights=[float(w) for w in rendered.weights])


class SequenceScorer:
    """Log-probabilities and value-head scores of threads under a model, without gradients.

    ``weights_context`` is entered around every forward pass. A frozen reference policy
    uses it to swap in its own weights (see ``reference.py``).
    """

    def __init__(
        self,
        parts: ModelParts,
        render: RenderFunction,
        max_tokens_per_forward: int,
        weights_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ):
        if max_tokens_per_forward < 1:
            raise ValueError(f"max_tokens_per_forward must be at least 1, got {max_tokens_per_forward}")
        self.parts = parts
        self.render = render
        self.max_tokens_per_forward = max_tokens_per_forward
        self.weights_context = weights_context

    # -- ops ------------------------------------------------------------------------------

    def logprobs(self, threads: Sequence[dict[str, Any]]) -> list[float]:
        """Sum of log pi(x_t | x_<t) over each thread's weighted tokens."""
        return [sum(values) for values in self.logprobs_per_token(threads)]

    def logprobs_per_token(self, threads: Sequence[dict[str, Any]]) -> list[list[float]]:
        """log pi(x_t | x_<t) of each weighted token of each thread."""
        sequences = [render_sequence(self.render, thread) for thread in threads]
        outputs = self._run(sequences, logprobs=True, values=False)
        return [_as_list(output.logprobs) for output in outputs]

    def raw_logprobs(self, ids_lists: Sequence[Sequence[int]]) -> list[list[float]]:
        """log pi(x_t | x_<t) for t = 1 .. n-1 of each plain id list, with no chat template."""
        sequences = []
        for ids in ids_lists:
            if len(ids) < 2:
                raise InvalidRequest(
                    f"raw_logprobs needs at least 2 token ids (the first one is only context), got {len(ids)}"
                )
            sequences.append(TokenSequence(ids=list(ids), weights=[0.0] + [1.0] * (len(ids) - 1)))
        outputs = self._run(sequences, logprobs=True, values=False)
        return [_as_list(output.logprobs) for output in outputs]

    def score(self, threads: Sequence[dict[str, Any]]) -> list[list[float]]:
        """Value-head output at each weighted token of each thread."""
        self._require_value_head("score")
        sequences = [render_sequence(self.render, thread) for thread in threads]
        outputs = self._run(sequences, logprobs=False, values=True)
        scores = []
        for sequence, output in zip(sequences, outputs, strict=True):
            values = _values(output)
            index = torch.tensor(sequence.weighted_positions(), dtype=torch.long, device=values.device)
            scores.append(_as_list(values[index]))
        return scores

    def score_last_token(self, threads: Sequence[dict[str, Any]]) -> list[float]:
        """Value-head output at the last token of each rendered thread."""
        self._require_value_head("score_last_token")
        sequences = [render_sequence(self.render, thread) for thread in threads]
        outputs = self._run(sequences, logprobs=False, values=True)
        return [float(_values(output)[-1]) for output in outputs]

    # -- helpers --------------------------------------------------------------------------

    def _require_value_head(self, op: str) -> None:
        if self.parts.scalar_head is None:
            raise InvalidRequest(
                f"{op} needs a scoring model, and this spawn has no value head; "
                f"build it with .into_scoring_model() before spawning"
            )

    def _run(self, sequences: list[TokenSequence], *, logprobs: bool, values: bool) -> list[SequenceOutputs]:
        for index, sequence in enumerate(sequences):
            if len(sequence) == 0:
                raise InvalidRequest(f"thread {index} renders to no tokens; give it at least one turn")

        results: list[SequenceOutputs | None] = [None] * len(sequences)
        groups = group_sequences_by_tokens([len(s) for s in sequences], self.max_tokens_per_forward)
        with torch.no_grad(), training_mode(self.parts.module, False), self.weights_context():
            for group in groups:
                outputs = forward_packed(
                    self.parts,
                    [sequences[i] for i in group],
                    logprobs_for=[logprobs] * len(group),
                    values_for=[values] * len(group),
                    max_tokens=self.max_tokens_per_forward,
                )
                for index, output in zip(group, outputs, strict=True):
                    results[index] = output
        return [result for result in results if result is not None]


def _values(output: SequenceOutputs) -> torch.Tensor:
    assert output.values is not None, "the forward pass was run without values"
    return output.values


def _as_list(values: torch.Tensor | None) -> list[float]:
    return [] if values is None else values.detach().float().cpu().tolist()
