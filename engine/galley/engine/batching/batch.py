"""The running batch: admission against the token budget, prefill, and one decode step at a time."""

from __future__ import annotations

import inspect
import logging
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from transformers import PretrainedConfig
from transformers.cache_utils import DynamicCache, DynamicLayer

from galley.engine.batching.kv_cache import BatchKVCache
from galley.engine.batching.requests import GenerationResult
from galley.engine.batching.sampling import RowSampling, choose_next_tokens
from galley.engine.batching.throughput import ThroughputMeter
from galley.engine.errors import OpFailed

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class SequenceState:
    """One admitted or waiting generation request and the tokens generated so far."""

    future: Future
    prompt_ids: list[int]
    max_new_tokens: int  # after clamping to the KV cache budget
    min_new_tokens: int
    sampling: RowSampling
    generated: list[int] = field(default_factory=list)

    @property
    def reserved_tokens(self) -> int:
        return len(self.prompt_ids) + self.max_new_tokens

    @property
    def last_position(self) -> int:
        """Position id of the newest generated token, which the next decode step feeds."""
        return len(self.prompt_ids) + len(self.generated) - 1


# Largest share of padding in one prefill forward. Longer prompts start a new forward.
MAX_PREFILL_PADDING = 0.15


def split_by_length(group: list[SequenceState], *, max_padding: float) -> list[list[SequenceState]]:
    """Split sequences, sorted by prompt length, into buckets whose left padding stays within ``max_padding``.

    Padding is the share of (rows * longest prompt) that no prompt fills.
    """
    buckets: list[list[SequenceState]] = []
    real_tokens = 0
    for sequence in sorted(group, key=lambda item: len(item.prompt_ids)):
        length = len(sequence.prompt_ids)  # the maximum length so far, because of the sort
        if buckets:
            rows = len(buckets[-1]) + 1
            if 1 - (real_tokens + length) / (rows * length) <= max_padding:
                buckets[-1].append(sequence)
                real_tokens += length
                continue
        buckets.append([sequence])
        real_tokens = length
    return buckets


class RunningBatch:
    """Sequences decoded together, their KV cache, and the cache tokens they reserve.

    Every method runs on the compute thread. Futures are resolved here as sequences end.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        eos_token_ids: set[int],
        pad_token_id: int,
        kv_cache_len: int,
        max_batch_size: int | None,
        max_prefill_tokens: int,
        meter: ThroughputMeter,
    ):
        self.model = model
        self.config = model_config(model)
        self.device = next(model.parameters()).device
        self.eos_token_ids = eos_token_ids
        self.eos_tensor = torch.tensor(sorted(eos_token_ids), dtype=torch.long, device=self.device)
        # Models pad their embedding rows (Qwen3: 151,936 rows for 151,669 tokens). The tokenizer
        # cannot decode ids past its last one, so when this is set, sampling never picks them.
        self.token_limit: int | None = None
        self.pad_token_id = pad_token_id
        self.kv_cache_len = kv_cache_len
        self.max_batch_size = max_batch_size
        self.max_prefill_tokens = max_prefill_tokens
        self.meter = meter
        self.logits_to_keep = _accepts_logits_to_keep(model)

        self.cache = BatchKVCache(num_layers=len(DynamicCache(config=self.config).layers), slots=kv_cache_len)
        self.rows: list[SequenceState] = []  # parallel to the cache rows
        self.reserved_tokens = 0
        self.prompt_tokens = 0
        self.finished = 0
        self.failed = 0

    # ----------------------------------------------------------------------------------
    # Admission and prefill

    def admit(self, waiting: deque[SequenceState]) -> list[SequenceState]:
        """Take waiting sequences, first come first served, while they fit the budget and the prefill.

        Two budgets hold at once. The tokens reserved by all rows (prompt + max_new_tokens
        each) stay within kv_cache_len. And because rows are left-padded to a common length,
        the cache slots they can come to span, rows * longest reservation, stay within
        kv_cache_len too, so the cache never outgrows the memory planned for the spawn.
        The head of the queue always fits into an empty batch, because a request's
        max_new_tokens is clamped to what its prompt leaves of kv_cache_len.

        NOTE: while one long sequence runs among short ones, the padded layout admits fewer
        rows than the token count alone would. A paged cache would lift that limit.
        """
        admitted: list[SequenceState] = []
        width = 0
        longest = self.longest_reservation
        while waiting:
            head = waiting[0]
            if self.reserved_tokens + head.reserved_tokens > self.kv_cache_len:
                break
            rows = len(self.rows) + len(admitted) + 1
            if rows * max(longest, head.reserved_tokens) > self.kv_cache_len:
                break
            if self.max_batch_size is not None and rows > self.max_batch_size:
                break
            new_width = max(width, len(head.prompt_ids))
            if admitted and (len(admitted) + 1) * new_width > self.max_prefill_tokens:
                break
            waiting.popleft()
            admitted.append(head)
            width = new_width
            longest = max(longest, head.reserved_tokens)
            self.reserved_tokens += head.reserved_tokens
        return admitted

    @property
    def longest_reservation(self) -> int:
        return max((sequence.reserved_tokens for sequence in self.rows), default=0)

    def prefill(self, group: list[SequenceState]) -> None:
        """Run the admitted prompts, pick each one's first token, and add the unfinished ones to the batch.

        Prompts of similar length share a forward, so little compute goes to padding.
        """
        with torch.inference_mode():  # the cache's tensors are inference tensors
            self.cache.reserve_rows(len(self.rows) + len(group))
        for bucket in split_by_length(group, max_padding=MAX_PREFILL_PADDING):
            self._prefill_bucket(bucket)

    def _prefill_bucket(self, group: list[SequenceState]) -> None:
        try:
            with torch.inference_mode():
                logits, keys, values, mask = self._prefill_forward(group)
                tokens = self._choose(logits, group)
        except Exception as error:
            logger.exception("prefill failed for %d requests", len(group))
            self.fail(group, OpFailed(f"prefill failed: {error!r}"))
            return
        self.prompt_tokens += sum(len(sequence.prompt_ids) for sequence in group)
        self.meter.record(len(group))

        pairs = zip(group, tokens, strict=True)
        keep = [index for index, (sequence, token) in enumerate(pairs) if not self._append(sequence, token)]
        if keep:
            rows = torch.tensor(keep, device=mask.device)
            with torch.inference_mode():
                self.cache.insert([k[rows] for k in keys], [v[rows] for v in values], mask[rows])
            self.rows.extend(group[index] for index in keep)

    def _prefill_forward(
        self, group: list[SequenceState]
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Run the left-padded prompts and return last-position logits, per-layer keys and values, and the mask."""
        width = max(len(sequence.prompt_ids) for sequence in group)
        input_ids = torch.full((len(group), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.bool)
        for row, sequence in enumerate(group):
            input_ids[row, width - len(sequence.prompt_ids) :] = torch.tensor(sequence.prompt_ids)
            mask[row, width - len(sequence.prompt_ids) :] = True
        position_ids = (mask.long().cumsum(dim=-1) - 1).clamp(min=0)

        cache = DynamicCache(config=self.config)
        extra = {"logits_to_keep": 1} if self.logits_to_keep else {}
        output = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=position_ids.to(self.device),
            past_key_values=cache,
            use_cache=True,
            **extra,
        )
        layers = [cast(DynamicLayer, layer) for layer in cache.layers]
        keys = [cast(torch.Tensor, layer.keys) for layer in layers]  # (n, kv_heads, width, head_dim)
        values = [cast(torch.Tensor, layer.values) for layer in layers]
        return output.logits[:, -1, :], keys, values, mask.to(self.device)

    # ----------------------------------------------------------------------------------
    # Decode

    def decode(self) -> None:
        """Generate one token for every running sequence; remove those that end."""
        rows = self.rows
        input_ids = torch.tensor([[sequence.generated[-1]] for sequence in rows], device=self.device)
        position_ids = torch.tensor([[sequence.last_position] for sequence in rows], device=self.device)
        try:
            with torch.inference_mode():
                attention_mask = self.cache.decode_mask()  # (rows, length + 1)
                output = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    past_key_values=self.cache.hf_cache,
                    use_cache=True,
                )
                self.cache.advance(1)
                tokens = self._choose(output.logits[:, -1, :], rows)
        except Exception as error:
            logger.exception("decode step failed for %d running requests", len(rows))
            self.fail_running(OpFailed(f"decode step failed: {error!r}"))
            return
        self.meter.record(len(rows))
        pairs = zip(rows, tokens, strict=True)
        finished = [index for index, (sequence, token) in enumerate(pairs) if self._append(sequence, token)]
        if finished:
            self.remove(finished)

    def _choose(self, logits: torch.Tensor, sequences: list[SequenceState]) -> list[int]:
        for sequence in sequences:
            sequence.sampling.suppress_eos = len(sequence.generated) < sequence.min_new_tokens
        if self.token_limit is not None:
            logits = logits[:, : self.token_limit]
        return choose_next_tokens(logits, [sequence.sampling for sequence in sequences], self.eos_tensor)

    def _append(self, sequence: SequenceState, token: int) -> bool:
        """Add a generated token; resolve the sequence and return True if it has ended."""
        sequence.generated.append(token)
        if token in self.eos_token_ids:
            reason = "eos"
        elif len(sequence.generated) >= sequence.max_new_tokens:
            reason = "length"
        else:
            return False
        self.reserved_tokens -= sequence.reserved_tokens
        self.finished += 1
        prompt_tokens = len(sequence.prompt_ids)
        resolve(sequence.future, GenerationResult(list(sequence.generated), reason, prompt_tokens))
        return True

    # ----------------------------------------------------------------------------------
    # Leaving without finishing

    def remove(self, indices: list[int]) -> None:
        """Take rows out of the batch (their futures are already resolved or cancelled)."""
        with torch.inference_mode():
            moves = self.cache.remove(indices)
        for source, destination in moves:
            self.rows[destination] = self.rows[source]
        del self.rows[self.cache.rows :]

    def drop_cancelled(self) -> None:
        cancelled = [index for index, sequence in enumerate(self.rows) if sequence.future.cancelled()]
        if cancelled:
            self.reserved_tokens -= sum(self.rows[index].reserved_tokens for index in cancelled)
            self.remove(cancelled)

    def fail(self, sequences: list[SequenceState], error: Exception) -> None:
        """Fail admitted sequences that are not (or no longer) rows, and release their reservation."""
        for sequence in sequences:
            self.reserved_tokens -= sequence.reserved_tokens
            self.failed += 1
            reject(sequence.future, error)

    def fail_running(self, error: Exception) -> None:
        """Fail every running sequence and empty the cache."""
        running, self.rows = self.rows, []
        self.cache.clear()
        self.fail(running, error)


def model_config(model: torch.nn.Module) -> PretrainedConfig:
    config = getattr(model, "config", None)
    if not isinstance(config, PretrainedConfig):
        raise ValueError(f"{type(model).__name__} has no transformers config; pass a transformers causal LM")
    return config


def check_model_supported(model: torch.nn.Module) -> None:
    """Raise ValueError unless every attention layer of the model keeps a plain full-length cache.

    Sliding-window, linear-attention and shared-KV layers keep other cache layouts, which the
    row and column moves of ``BatchKVCache`` would corrupt.
    """
    layers = DynamicCache(config=model_config(model)).layers
    other = sorted({type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer})
    if not layers or other:
        raise ValueError(
            f"{type(model).__name__} uses cache layers {other or 'that are created lazily'}; the batching "
            f"scheduler supports models whose layers all use full attention (e.g. Llama, Qwen3)"
        )


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Check whether the forward takes ``logits_to_keep``, which spares the prefill the (n, L, vocab) logits."""
    candidates: list[Any] = [model]
    get_base_model = getattr(model, "get_base_model", None)
    if callable(get_base_model):  # a peft wrapper passes keyword arguments on to its base model
        candidates.append(get_base_model())
    return any(
        "logits_to_keep" in inspect.signature(candidate.forward).parameters for candidate in candidates
    )


def resolve(future: Future, value: Any) -> None:
    try:
        future.set_result(value)
    except InvalidStateError:  # cancelled by the caller meanwhile
        pass


def reject(future: Future, error: BaseException) -> None:
    try:
        future.set_exception(error)
    except InvalidStateError:
        pass
