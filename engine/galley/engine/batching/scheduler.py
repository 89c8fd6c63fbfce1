"""Continuous batching for one inference spawn.

Requests arrive from any thread (``add``, or ``await submit`` from asyncio); one compute
thread calls ``step()``, or ``run()`` which steps while there is work. Each step:

1. admits waiting requests, first come first served, while the tokens they may hold
   (prompt + max_new_tokens) fit in ``kv_cache_len`` next to those already running;
2. prefills the admitted prompts in one left-padded forward and picks their first token;
3. decodes the running batch by one token in one forward, with every row's own sampling.

A sequence leaves the batch as soon as it ends (EOS, its max_new_tokens), and its room goes
to the next waiting request in the following step. Because admission reserves room up to
max_new_tokens, a running sequence never has to be evicted or recomputed.

Why an own loop rather than transformers' continuous batching: transformers 5.23's
``ContinuousBatchingManager`` (``model.generate_batch``) runs on CPU, and its greedy output
matched ``generate`` on the tiny test models. It lacks four things this engine promises:

- Per-request seeds. It samples from one global seed, so a seeded request is not
  reproducible next to other traffic.
- Per-request min_new_tokens. It drops ``MinNewTokensLengthLogitsProcessor`` as unsupported.
- No eviction. It admits by free cache blocks and, when blocks run out, offloads or
  re-prefills running requests, instead of reserving room up front.
- Compute on the caller's thread. It owns a background thread, while the worker runs all
  model compute on its own thread.

The loop here keeps transformers' model forward and attention code and replaces only the
cache bookkeeping (``kv_cache.BatchKVCache``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

from galley.engine.batching.batch import (
    RunningBatch,
    SequenceState,
    check_model_supported,
    model_config,
    reject,
    resolve,
)
from galley.engine.batching.logprobs import DEFAULT_MAX_BATCH_TOKENS, token_logprobs, validate_sequences
from galley.engine.batching.requests import GenerationRequest, GenerationResult, validate_request
from galley.engine.batching.sampling import RowSampling
from galley.engine.batching.throughput import ThroughputMeter
from galley.engine.errors import InvalidRequest, OpFailed

logger = logging.getLogger(__name__)

# Padded prompt tokens prefilled in one forward. A prompt longer than this is prefilled alone.
# NOTE: there is no chunked prefill, so one long prompt's activations (and, with sdpa's math
# kernel on CPU, its (heads, L, L) attention scores) are allocated in one piece.
DEFAULT_MAX_PREFILL_TOKENS = 8192


class SchedulerClosed(OpFailed):
    """The scheduler was closed before the request finished."""


@dataclass(frozen=True)
class SchedulerStats:
    waiting: int  # requests not yet admitted
    running: int  # sequences in the decode batch
    reserved_tokens: int  # KV cache tokens held by running sequences (prompt + max_new_tokens)
    kv_cache_len: int
    kv_cache_bytes: int  # allocated for kv_cache_len token slots at the first generation; 0 before
    tokens_generated: int  # since the scheduler started
    tokens_per_second: float  # over the last throughput window
    prompt_tokens: int  # prefilled since the scheduler started
    requests_finished: int
    requests_failed: int


@dataclass(eq=False)
class _LogprobsJob:
    future: Future
    sequences: list[list[int]]


@dataclass(eq=False)
class _Call:
    future: Future
    function: Callable[[], Any]


class Scheduler:
    """Continuous-batching generation over one causal LM, plus batched log-probabilities.

    The model must be in eval mode; the scheduler never switches modes. ``kv_cache_len`` is
    the token budget of all sequences in flight together. A request's max_new_tokens
    (``tokens_to_generate`` when unset) is clamped to what its prompt leaves of
    ``kv_cache_len``; such a request ends with finish_reason "length" at that point.

    Thread use: ``add``, ``submit``, ``add_logprobs``, ``call``, ``stats`` and ``close`` may
    be called from any thread. ``step`` and ``run`` must only ever run on one thread at a
    time, which owns the model for as long as the scheduler lives.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        eos_token_ids: list[int],
        pad_token_id: int | None,
        kv_cache_len: int,
        tokens_to_generate: int,
        max_batch_size: int | None = None,
        max_prefill_tokens: int = DEFAULT_MAX_PREFILL_TOKENS,
        logprobs_max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        throughput_window_s: float = 10.0,
        token_limit: int | None = None,
        cache_fix: str | None = None,
    ):
        for name, value in (
            ("kv_cache_len", kv_cache_len),
            ("tokens_to_generate", tokens_to_generate),
            ("max_prefill_tokens", max_prefill_tokens),
        ):
            if value < 1:
                raise ValueError(f"{name}={value} is invalid; set it to 1 or more")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(
                f"max_batch_size={max_batch_size} is invalid; set it to 1 or more, or None for no limit"
            )
        check_model_supported(model)

        self.model = model
        self.kv_cache_len = kv_cache_len
        self.cache_fix = cache_fix  # advice for a prompt over kv_cache_len, when not "raise kv_cache_len"
        self.tokens_to_generate = tokens_to_generate
        self.logprobs_max_batch_tokens = logprobs_max_batch_tokens
        self.vocab_size: int = model_config(model).get_text_config().vocab_size
        self.device = next(model.parameters()).device
        self.eos_token_ids = frozenset(eos_token_ids)
        # Padding positions are masked out, so any valid id works; 0 when the model has none.
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0

        self._meter = ThroughputMeter(throughput_window_s)
        self._batch = RunningBatch(
            model,
            eos_token_ids=set(self.eos_token_ids),
            pad_token_id=self.pad_token_id,
            kv_cache_len=kv_cache_len,
            max_batch_size=max_batch_size,
            max_prefill_tokens=max_prefill_tokens,
            meter=self._meter,
        )
        self._batch.token_limit = token_limit
        self._waiting: deque[SequenceState] = deque()
        self._logprobs_jobs: list[_LogprobsJob] = []
        self._calls: list[_Call] = []

        self._condition = threading.Condition()
        self._inbox: list[SequenceState | _LogprobsJob | _Call] = []
        self._closed = False
        self._loop_running = False
        self._thread: threading.Thread | None = None

    @classmethod
    def for_model(
        cls, model: torch.nn.Module, *, kv_cache_len: int, tokens_to_generate: int, **options
    ) -> Scheduler:
        """Build a scheduler with the EOS and pad ids of the model's generation config.

        Generation stops at any of ``generation_config.eos_token_id`` (an id or a list). The
        pad id falls back to the model config's, then to 0.
        """
        generation_config = getattr(model, "generation_config", None)
        eos = getattr(generation_config, "eos_token_id", None)
        if eos is None:
            eos_token_ids = []
        elif isinstance(eos, int):
            eos_token_ids = [eos]
        else:
            eos_token_ids = list(eos)
        pad = getattr(generation_config, "pad_token_id", None)
        if pad is None:
            pad = getattr(model_config(model), "pad_token_id", None)
        return cls(
            model,
            eos_token_ids=eos_token_ids,
            pad_token_id=pad,
            kv_cache_len=kv_cache_len,
            tokens_to_generate=tokens_to_generate,
            **options,
        )

    # ----------------------------------------------------------------------------------
    # Submission (any thread)

    def add(self, request: GenerationRequest) -> Future[GenerationResult]:
        """Queue a generation; return a future for its result.

        Raises InvalidRequest at once for a request that cannot run (see ``validate_request``).
        Cancelling the future drops the request at the next step and frees its room.
        """
        validate_request(
            request, kv_cache_len=self.kv_cache_len, vocab_size=self.vocab_size, cache_fix=self.cache_fix
        )
        requested = request.max_new_tokens if request.max_new_tokens is not None else self.tokens_to_generate
        if request.min_new_tokens > requested:
            raise InvalidRequest(
                f"min_new_tokens={request.min_new_tokens} exceeds the default max_new_tokens "
                f"(tokens_to_generate={self.tokens_to_generate}); set max_new_tokens or lower min_new_tokens"
            )
        sequence = SequenceState(
            future=Future(),
            prompt_ids=list(request.prompt_ids),
            max_new_tokens=min(requested, self.kv_cache_len - len(request.prompt_ids)),
            min_new_tokens=request.min_new_tokens,
            sampling=RowSampling(
                temperature=request.temperature or None,
                top_p=request.top_p,
                generator=self._generator(request) if request.temperature else None,
                suppress_eos=request.min_new_tokens > 0,
            ),
        )
        self._post(sequence)
        return sequence.future

    async def submit(self, request: GenerationRequest) -> GenerationResult:
        """Generate for ``request`` and wait for the result without blocking the event loop."""
        return await asyncio.wrap_future(self.add(request))

    def add_logprobs(self, sequences: list[list[int]]) -> Future[list[list[float]]]:
        """Queue a log-probability request; its result is ``token_logprobs`` of the sequences.

        All logprob requests waiting at a step run together in padded batches.
        """
        validate_sequences(sequences, vocab_size=self.vocab_size)
        job = _LogprobsJob(Future(), [list(sequence) for sequence in sequences])
        self._post(job)
        return job.future

    async def logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        return await asyncio.wrap_future(self.add_logprobs(sequences))

    def call(self, function: Callable[[], Any]) -> Future:
        """Run ``function()`` on the compute thread between two steps (e.g. a scoring forward)."""
        work = _Call(Future(), function)
        self._post(work)
        return work.future

    def _post(self, item: SequenceState | _LogprobsJob | _Call) -> None:
        with self._condition:
            if self._closed:
                raise SchedulerClosed("the generation scheduler is closed; spawn the model again")
            self._inbox.append(item)
            self._condition.notify()

    def _generator(self, request: GenerationRequest) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        if request.seed is None:
            generator.seed()
        else:
            generator.manual_seed(request.seed)
        return generator

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            waiting=len(self._waiting) + sum(isinstance(item, SequenceState) for item in list(self._inbox)),
            running=len(self._batch.rows),
            reserved_tokens=self._batch.reserved_tokens,
            kv_cache_len=self.kv_cache_len,
            kv_cache_bytes=self._batch.cache.allocated_bytes,
            tokens_generated=self._meter.total,
            tokens_per_second=self._meter.tokens_per_second(),
            prompt_tokens=self._batch.prompt_tokens,
            requests_finished=self._batch.finished,
            requests_failed=self._batch.failed,
        )

    # ----------------------------------------------------------------------------------
    # Compute thread

    def run(self) -> None:
        """Step while there is work and wait while there is none, until ``close()``."""
        with self._condition:
            self._loop_running = True
        try:
            while True:
                with self._condition:
                    while not self._closed and not self._inbox and not self.has_work():
                        self._condition.wait()
                    if self._closed:
                        return
                try:
                    self.step()
                except Exception as error:  # a bug in the scheduler: fail what is in flight, keep serving
                    logger.exception(
                        "generation scheduler step failed; failing %d requests", self._in_flight()
                    )
                    self._fail_everything(OpFailed(f"generation failed unexpectedly: {error!r}"))
        finally:
            with self._condition:
                self._loop_running = False
            self._fail_everything(
                SchedulerClosed("the generation scheduler was closed before this request finished")
            )

    def start(self, name: str = "galley-generation") -> threading.Thread:
        """Run ``run()`` on a new daemon thread, for callers without a compute thread of their own."""
        if self._thread is not None:
            raise RuntimeError("the scheduler thread is already started")
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()
        return self._thread

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting work; fail requests still in flight with SchedulerClosed."""
        with self._condition:
            self._closed = True
            loop_running = self._loop_running
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        elif not loop_running:
            self._fail_everything(
                SchedulerClosed("the generation scheduler was closed before this request finished")
            )

    def has_work(self) -> bool:
        """Check whether ``step()`` has work, not counting requests still in the inbox."""
        return bool(self._waiting or self._batch.rows or self._logprobs_jobs or self._calls)

    def step(self) -> bool:
        """Run one scheduling iteration; return whether it did any work."""
        self._drain_inbox()
        self._drop_cancelled()
        worked = self._run_calls()
        worked = self._run_logprobs() or worked
        admitted = self._batch.admit(self._waiting)
        if admitted:
            self._batch.prefill(admitted)
            worked = True
        if self._batch.rows:
            self._batch.decode()
            worked = True
        return worked

    def _drain_inbox(self) -> None:
        with self._condition:
            items, self._inbox = self._inbox, []
        for item in items:
            if isinstance(item, SequenceState):
                self._waiting.append(item)
            elif isinstance(item, _LogprobsJob):
                self._logprobs_jobs.append(item)
            else:
                self._calls.append(item)

    def _drop_cancelled(self) -> None:
        self._waiting = deque(sequence for sequence in self._waiting if not sequence.future.cancelled())
        self._batch.drop_cancelled()

    def _run_calls(self) -> bool:
        calls, self._calls = self._calls, []
        for work in calls:
            if work.future.cancelled():
                continue
            try:
                resolve(work.future, work.function())
            except Exception as error:
                reject(work.future, error)
        return bool(calls)

    def _run_logprobs(self) -> bool:
        jobs = [job for job in self._logprobs_jobs if not job.future.cancelled()]
        self._logprobs_jobs = []
        if not jobs:
            return False
        sequences = [sequence for job in jobs for sequence in job.sequences]
        try:
            values = token_logprobs(
                self.model,
                sequences,
                pad_token_id=self.pad_token_id,
                vocab_size=self.vocab_size,
                max_batch_tokens=self.logprobs_max_batch_tokens,
            )
        except Exception as error:
            logger.exception("batched logprobs forward failed for %d requests", len(jobs))
            for job in jobs:
                reject(job.future, OpFailed(f"logprobs forward failed: {error!r}"))
            return True
        start = 0
        for job in jobs:
            resolve(job.future, values[start : start + len(job.sequences)])
            start += len(job.sequences)
        return True

    # ----------------------------------------------------------------------------------
    # Failures

    def _in_flight(self) -> int:
        return len(self._batch.rows) + len(self._waiting) + len(self._logprobs_jobs) + len(self._calls)

    def _fail_everything(self, error: Exception) -> None:
        """Fail every request not yet finished and empty the batch."""
        self._drain_inbox()
        self._batch.fail_running(error)
        waiting, self._waiting = list(self._waiting), deque()
        self._batch.failed += len(waiting)
        for sequence in waiting:
            reject(sequence.future, error)
        for work in [*self._logprobs_jobs, *self._calls]:
            reject(work.future, error)
        self._logprobs_jobs, self._calls = [], []
