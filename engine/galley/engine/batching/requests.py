"""Requests and results of the batching scheduler, with their validation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from galley.engine.errors import InvalidRequest

FinishReason = Literal["eos", "length"]


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to continue.

    ``max_new_tokens`` None takes the scheduler's ``tokens_to_generate``. ``temperature`` 0 or
    None means greedy decoding; ``top_p`` None or 1.0 keeps the whole distribution. ``seed``
    seeds this request's own ``torch.Generator``, so a sampled request gives the same tokens
    whatever else runs in the batch (up to float rounding that moves a draw across a
    probability boundary).
    """

    prompt_ids: list[int]
    max_new_tokens: int | None = None
    min_new_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    # Generated token ids. They end with the EOS token when finish_reason is "eos".
    ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int


def validate_request(
    request: GenerationRequest, *, kv_cache_len: int, vocab_size: int, cache_fix: str | None = None
) -> None:
    """Raise InvalidRequest naming the field, its value and the fix, unless the request can run.

    ``cache_fix`` replaces the advice given when the prompt does not fit ``kv_cache_len``.
    """
    prompt = request.prompt_ids
    if len(prompt) == 0:
        raise InvalidRequest("prompt_ids is empty; generation needs at least one prompt token")
    bad = [token for token in prompt if not is_token_id(token, vocab_size)]
    if bad:
        raise InvalidRequest(
            f"prompt_ids contains {len(bad)} token ids outside the vocabulary [0, {vocab_size}), "
            f"first {bad[0]!r}; tokenize with this model's tokenizer"
        )
    if request.max_new_tokens is not None and request.max_new_tokens < 1:
        raise InvalidRequest(f"max_new_tokens={request.max_new_tokens} is invalid; set it to 1 or more")
    if request.min_new_tokens < 0:
        raise InvalidRequest(f"min_new_tokens={request.min_new_tokens} is invalid; set it to 0 or more")
    if request.max_new_tokens is not None and request.min_new_tokens > request.max_new_tokens:
        raise InvalidRequest(
            f"min_new_tokens={request.min_new_tokens} exceeds max_new_tokens={request.max_new_tokens}; "
            f"lower min_new_tokens or raise max_new_tokens"
        )
    temperature = request.temperature
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise InvalidRequest(f"temperature={temperature} is invalid; use 0 (greedy) or a positive number")
    top_p = request.top_p
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise InvalidRequest(f"top_p={top_p} is invalid; use a number in (0, 1]")

    # The cache must hold the prompt plus the tokens the request is guaranteed to get.
    needed = len(prompt) + max(1, request.min_new_tokens)
    if needed > kv_cache_len:
        raise InvalidRequest(
            f"the prompt has {len(prompt)} tokens and min_new_tokens is {request.min_new_tokens}, "
            f"so this request needs {needed} tokens of KV cache, more than kv_cache_len={kv_cache_len}; "
            + (cache_fix or f"shorten the prompt or spawn the model with kv_cache_len >= {needed}"),
            data={
                "prompt_tokens": len(prompt),
                "min_new_tokens": request.min_new_tokens,
                "kv_cache_len": kv_cache_len,
            },
        )


def is_token_id(token: object, vocab_size: int) -> bool:
    """Check that ``token`` is an int (not a bool) in [0, vocab_size)."""
    return isinstance(token, int) and not isinstance(token, bool) and 0 <= token < vocab_size
