"""The generation seam of a worker: requests go in, results come back through callbacks.

The worker loop calls ``submit`` for every generate request it reads, then ``step`` while
``has_work`` is true, reading new requests between steps. ``SequentialGenerator`` runs one
whole request per step through transformers' ``generate``. A continuous-batching scheduler
implements the same three methods and advances all running sequences by one token per step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from galley.engine.batching.requests import GenerationRequest, GenerationResult

Done = Callable[[GenerationResult | BaseException], None]


class Generator(Protocol):
    def submit(self, request: GenerationRequest, done: Done) -> None: ...

    def has_work(self) -> bool: ...

    def step(self) -> None:
        """Advance the work in flight and call ``done`` for each request that finished."""
        ...


class SequentialGenerator:
    """One request at a time through ``module.generate``: the reference the scheduler must match."""

    def __init__(
        self,
        module: nn.Module,
        eos_ids: list[int],
        pad_id: int | None,
        tokens_to_generate: int,
        token_limit: int | None = None,
    ):
        self.module = module
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.tokens_to_generate = tokens_to_generate
        # Ids at or past the tokenizer's size (the embedding's rounding rows) are never generated.
        self.token_limit = token_limit
        self.pending: deque[tuple[GenerationRequest, Done]] = deque()

    def submit(self, request: GenerationRequest, done: Done) -> None:
        self.pending.append((request, done))

    def has_work(self) -> bool:
        return bool(self.pending)

    def step(self) -> None:
        request, done = self.pending.popleft()
        try:
            result = self.generate(request)
        except Exception as error:  # reported to this request's caller; the worker goes on
            done(error)
            return
        done(result)

    def generate(self, request: GenerationRequest) -> GenerationResult:
        device = next(self.module.parameters()).device
        prompt = torch.tensor([request.prompt_ids], dtype=torch.long, device=device)  # (1, T)
        max_new = request.max_new_tokens or self.tokens_to_generate
        sampled = bool(request.temperature)
        options: dict[str, Any] = dict(
            max_new_tokens=max_new,
            min_new_tokens=request.min_new_tokens or None,
            do_sample=sampled,
            eos_token_id=self.eos_ids or None,
            pad_token_id=self.pad_id,
            attention_mask=torch.ones_like(prompt),
        )
        model: Any = self.module  # a transformers causal LM; nn.Module's type has no config or generate()
        rows = int(model.config.get_text_config().vocab_size)
        if self.token_limit is not None and self.token_limit < rows:
            options["suppress_tokens"] = list(range(self.token_limit, rows))
        if sampled:
            options.update(temperature=request.temperature, top_p=request.top_p or 1.0, top_k=0)
        else:
            # Unset the sampling fields of the model's generation config, which greedy ignores.
            options.update(temperature=None, top_p=None, top_k=None)

        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            output = model.generate(prompt, **options)  # (1, T + new)

        new_ids = output[0, prompt.shape[1] :].tolist()
        finished_on_eos = bool(new_ids) and new_ids[-1] in self.eos_ids
        return GenerationResult(
            ids=new_ids,
            finish_reason="eos" if finished_on_eos else "length",
            prompt_tokens=len(request.prompt_ids),
        )
