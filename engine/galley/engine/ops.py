"""Inference ops of a worker, on one view of its model.

A view is the spawn's own model, or a frozen copy made by ``clone_inf`` that shares the
module and swaps its snapshot of the weights in around each forward pass. Op arguments and
results are the JSON objects listed in ``galley.protocol``.

Log-probabilities and scores go through the training package's ``SequenceScorer``, so an
inference op and a loss see the very same numbers for the same thread.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from galley.engine.batching.requests import GenerationRequest, GenerationResult, validate_request
from galley.engine.errors import EngineError, InvalidRequest
from galley.engine.modeling import LoadedModel
from galley.engine.spec import LoadSpec
from galley.engine.threads import decode, detokenize_thread, parse_thread, render_thread, tokenize_thread
from galley.protocol import Sampling

# Largest number of tokens in one forward pass of the logprobs and score ops.
MAX_TOKENS_PER_FORWARD = 8192

# Scorer ops that take a list of threads, and the result key of each.
BATCHED_RESULT_KEYS = {
    "logprobs": "logprob",
    "logprobs_per_token": "logprobs",
    "score": "scores",
    "score_last_token": "score",
}


class ModelView:
    def __init__(
        self,
        loaded: LoadedModel,
        spec: LoadSpec,
        scorer: Any,
        weights_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ):
        self.loaded = loaded
        self.spec = spec
        self.scorer = scorer
        self.weights_context = weights_context

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    def render(self, thread: dict[str, Any], *, add_generation_prompt: bool = False):
        return render_thread(self.tokenizer, thread, add_generation_prompt=add_generation_prompt)

    # -- text and threads -----------------------------------------------------------------

    def tokenize(self, args: dict[str, Any]) -> dict[str, Any]:
        text = _required(args, "text", str)
        return {"ids": list(self.tokenizer(text, add_special_tokens=False)["input_ids"])}

    def detokenize(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": decode(self.tokenizer, _ids(args, "ids"))}

    def tokenize_thread(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"thread": tokenize_thread(self.tokenizer, _thread(args)).model_dump()}

    def detokenize_thread(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"thread": detokenize_thread(self.tokenizer, _thread(args)).model_dump()}

    def serialize_thread(self, args: dict[str, Any]) -> dict[str, Any]:
        rendered = self.render(_thread(args))
        return {"ids": rendered.ids, "image_tokens": [], "weights": rendered.weights}

    # -- log-probabilities and scores -----------------------------------------------------

    def logprobs(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"logprob": self.scorer.logprobs([_thread(args)])[0]}

    def logprobs_per_token(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"logprobs": self.scorer.logprobs_per_token([_thread(args)])[0]}

    def raw_logprobs(self, args: dict[str, Any]) -> dict[str, Any]:
        ids = _ids(args, "ids")
        decode(self.tokenizer, ids)  # checks that every id is in the vocabulary
        return {"logprobs": self.scorer.raw_logprobs([ids])[0]}

    def score(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"scores": self.scorer.score([_thread(args)])[0]}

    def score_last_token(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"score": self.scorer.score_last_token([_thread(args)])[0]}

    def run_batch(self, op: str, args_list: list[dict[str, Any]]) -> list[dict[str, Any] | EngineError]:
        """Run one of the scorer ops for many requests at once: their threads share packed forwards.

        A request with an invalid thread gets its own error; the others still run together.
        """
        threads: list[dict[str, Any] | EngineError] = []
        for args in args_list:
            try:
                threads.append(_thread(args))
            except EngineError as error:
                threads.append(error)
        valid = [thread for thread in threads if not isinstance(thread, EngineError)]
        values = iter(getattr(self.scorer, op)(valid) if valid else [])
        result_key = BATCHED_RESULT_KEYS[op]
        return [
            thread if isinstance(thread, EngineError) else {result_key: next(values)} for thread in threads
        ]

    # -- generation -----------------------------------------------------------------------

    def generation_request(self, op: str, args: dict[str, Any]) -> GenerationRequest:
        """Render the prompt and resolve sampling (the call's, else generation_config.json's)."""
        thread = _thread(args)
        if op == "generate" and thread.get("kind", "string") != "string":
            raise InvalidRequest("generate takes a string thread; use generate_tokens for a tokenized thread")
        try:
            sampling = Sampling.model_validate(args.get("sampling") or {})
        except ValueError as error:
            raise InvalidRequest(f"invalid sampling: {error}") from None
        prompt = self.render(thread, add_generation_prompt=True).ids

        defaults = self.loaded.generation_defaults
        temperature = sampling.temperature
        if temperature is None:
            temperature = defaults.get("temperature") if defaults.get("do_sample") else 0.0
        top_p = sampling.top_p
        if top_p is None and temperature:
            top_p = defaults.get("top_p")
        max_new = sampling.max_gen_len or self.spec.tokens_to_generate
        min_new = sampling.min_gen_len or 0
        # Stop at the KV cache budget and the model's context length, whichever comes first.
        room = self.spec.kv_cache_len - len(prompt)
        if self.loaded.max_positions:
            room = min(room, self.loaded.max_positions - len(prompt))
        if room < 1:
            raise InvalidRequest(
                f"the prompt has {len(prompt)} tokens, which leaves no room to generate within "
                f"kv_cache_len={self.spec.kv_cache_len} and the model's context of {self.loaded.max_positions} "
                f"tokens; shorten the thread or spawn with a larger kv_cache_len"
            )
        self._check_min_gen_len(min_new, sampling.max_gen_len, len(prompt), room)
        max_new = min(max_new, room)

        request = GenerationRequest(
            prompt_ids=prompt,
            max_new_tokens=max_new,
            min_new_tokens=min_new,
            temperature=temperature,
            top_p=top_p,
            seed=sampling.seed,
        )
        validate_request(request, kv_cache_len=self.spec.kv_cache_len, vocab_size=self.loaded.vocab_size)
        return request

    def _check_min_gen_len(
        self, min_gen_len: int, max_gen_len: int | None, prompt_tokens: int, room: int
    ) -> None:
        """Raise InvalidRequest, in the recipe API's names, for a min_gen_len that cannot be met.

        ``room`` is the number of new tokens that the KV cache and the model's context leave
        after the prompt. Checking here keeps the scheduler's own message, which names the
        max_new_tokens lowered to ``room``, from reaching the recipe.
        """
        if max_gen_len is not None and min_gen_len > max_gen_len:
            raise InvalidRequest(
                f"min_gen_len={min_gen_len} exceeds max_gen_len={max_gen_len}; "
                f"lower min_gen_len or raise max_gen_len"
            )
        if max_gen_len is None and min_gen_len > self.spec.tokens_to_generate:
            raise InvalidRequest(
                f"min_gen_len={min_gen_len} exceeds the spawn's tokens_to_generate={self.spec.tokens_to_generate}; "
                f"lower min_gen_len, set max_gen_len >= {min_gen_len}, or spawn with a larger tokens_to_generate"
            )
        if min_gen_len <= room:
            return
        kv_cache_len, context = self.spec.kv_cache_len, self.loaded.max_positions
        if context and context < kv_cache_len:
            raise InvalidRequest(
                f"min_gen_len={min_gen_len} does not fit in the model's context: {context} tokens leave room "
                f"for {room} new tokens after the prompt, which has {prompt_tokens} tokens; shorten the prompt "
                f"or lower min_gen_len to {room} or less"
            )
        raise InvalidRequest(
            f"min_gen_len={min_gen_len} does not fit in the KV cache: kv_cache_len={kv_cache_len} leaves room "
            f"for {room} new tokens after the prompt, which has {prompt_tokens} tokens; shorten the prompt, "
            f"lower min_gen_len to {room} or less, or spawn with kv_cache_len >= {prompt_tokens + min_gen_len}",
            data={"prompt_tokens": prompt_tokens, "min_gen_len": min_gen_len, "kv_cache_len": kv_cache_len},
        )

    def generation_result(self, op: str, args: dict[str, Any], result: GenerationResult) -> dict[str, Any]:
        ids = list(result.ids)
        if result.finish_reason == "eos" and ids and ids[-1] in self.loaded.eos_ids:
            ids = ids[:-1]  # the chat template writes the end-of-turn token itself
        reply: dict[str, Any] = {
            "completion": decode(self.tokenizer, ids),
            "completion_ids": ids,
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
        }
        if result.finish_reason == "length" and self._cut_by_kv_cache(args, result):
            reply["finish_reason"] = "kv_cache"
            reply["kv_cache_len"] = result.prompt_tokens + len(result.ids)
        return reply

    def _cut_by_kv_cache(self, args: dict[str, Any], result: GenerationResult) -> bool:
        """Tell whether a "length" stop came before the requested length because the KV cache was full.

        ``generation_request`` lowers max_new_tokens to what the prompt leaves of kv_cache_len
        and of the model's context, and the scheduler of a training spawn lowers it to its
        smaller cache. So a stop short of the request without EOS hit one of those limits, and
        it is the cache unless the sequence reached the model's context length.
        """
        sampling = Sampling.model_validate(args.get("sampling") or {})
        requested = sampling.max_gen_len or self.spec.tokens_to_generate
        if len(result.ids) >= requested:
            return False
        context = self.loaded.max_positions
        return not (context and result.prompt_tokens + len(result.ids) >= context)


def _required(args: dict[str, Any], name: str, kind: type) -> Any:
    if name not in args:
        raise InvalidRequest(f"missing argument {name!r}")
    value = args[name]
    if not isinstance(value, kind):
        raise InvalidRequest(f"argument {name!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _ids(args: dict[str, Any], name: str) -> list[int]:
    ids = _required(args, name, list)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InvalidRequest(f"argument {name!r} must be a list of integer token ids")
    return ids


def _thread(args: dict[str, Any]) -> dict[str, Any]:
    """Validate the ``thread`` argument and return it as a JSON dict."""
    thread = args.get("thread")
    if thread is None:
        raise InvalidRequest("missing argument 'thread'")
    return parse_thread(thread).model_dump()
