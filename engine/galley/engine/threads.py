"""Render conversation threads into token ids and per-token training weights.

A thread is rendered with the tokenizer's own chat template, so the ids are exactly what
``tokenizer.apply_chat_template(messages, tokenize=True)`` returns for a string thread. Each
token also gets a weight: a weighted turn weights its content and the end-of-turn token that
closes it (``<|eot_id|>`` for Llama 3, ``<|im_end|>`` for Qwen), never the role header. Tokens
that the template adds on its own (the BOS token, headers, Qwen3's empty ``<think></think>``
block on the final assistant turn, the generation prompt) have weight 0.

Turn weights: a thread's ``weights`` (one per turn) when given, else 1.0 for assistant turns
and 0.0 for the others.

How turns are found in the rendered text: the template is also rendered with a unique
placeholder in place of each turn's content. The text around the placeholders is the
template's scaffolding (headers, end-of-turn tokens). In the real rendering, each turn's
content is searched for right after its header, also in the forms templates commonly
produce (whitespace stripped as Llama 3 does, reasoning dropped as Qwen3 does for earlier
turns). A weighted turn whose content cannot be found is an error rather than a silently
unweighted turn.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from galley.engine.errors import InvalidRequest
from galley.protocol import AnyThreadWire, StringThreadWire, TokenizedThreadWire

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class RenderedThread:
    ids: list[int]
    weights: list[float]  # one per id

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.weights):
            raise ValueError(f"{len(self.ids)} ids but {len(self.weights)} weights")


# ---------------------------------------------------------------------------------------
# Parsing and weights


def parse_thread(thread: AnyThreadWire | dict[str, Any]) -> AnyThreadWire:
    """Validate a thread given as a wire model or as its JSON dict."""
    if isinstance(thread, StringThreadWire | TokenizedThreadWire):
        parsed = thread
    elif isinstance(thread, dict):
        kind = thread.get("kind", "string")
        model = {"string": StringThreadWire, "tokens": TokenizedThreadWire}.get(kind)
        if model is None:
            raise InvalidRequest(f"thread kind {kind!r} is invalid; use 'string' or 'tokens'")
        try:
            parsed = model.model_validate(thread)
        except ValueError as error:
            raise InvalidRequest(f"invalid {kind} thread: {error}") from None
    else:
        raise InvalidRequest(f"a thread must be a JSON object, got {type(thread).__name__}")

    for index, (role, _) in enumerate(parsed.turns):
        if role not in ROLES:
            raise InvalidRequest(f"turn {index} has role {role!r}; use one of {', '.join(ROLES)}")
    if parsed.weights is not None and len(parsed.weights) != len(parsed.turns):
        raise InvalidRequest(
            f"thread has {len(parsed.turns)} turns but {len(parsed.weights)} weights; "
            f"give one weight per turn, or none for the default (assistant turns weighted)"
        )
    return parsed


def turn_weights(thread: AnyThreadWire) -> list[float]:
    """Return one weight per turn: the thread's own, else 1.0 for assistant turns."""
    if thread.weights is not None:
        return list(thread.weights)
    return [1.0 if role == "assistant" else 0.0 for role, _ in thread.turns]


# ---------------------------------------------------------------------------------------
# Template scaffolding


def _special_token_pattern(tokenizer) -> re.Pattern[str]:
    specials = [
        token.content for token in tokenizer.added_tokens_decoder.values() if token.special and token.content
    ]
    # Longest first, so that a token is never matched by a shorter token that prefixes it.
    specials.sort(key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in specials) or r"(?!x)x")


def _render_text(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    if not messages:
        raise InvalidRequest("the thread has no turns; add at least one turn, e.g. a user turn")
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as error:  # jinja raises its own exception types for template errors
        raise InvalidRequest(f"the model's chat template cannot render this thread: {error}") from None


def _placeholders(count: int) -> list[str]:
    # No whitespace (templates strip it) and no markup the templates look for.
    nonce = uuid.uuid4().hex[:12]
    return [f"GALLEYTURN{index}X{nonce}" for index in range(count)]


def _scaffold(tokenizer, roles: list[str], add_generation_prompt: bool, specials: re.Pattern[str]):
    """Render the template with placeholder contents.

    Returns ``(headers, eots, tail)``: the text before each turn's content (after the
    previous turn's end-of-turn token), the end-of-turn token after each turn's content
    ("" if the template puts none right there), and the text after the last turn.
    """
    placeholders = _placeholders(len(roles))
    messages = [{"role": role, "content": text} for role, text in zip(roles, placeholders, strict=True)]
    text = _render_text(tokenizer, messages, add_generation_prompt)

    headers, eots = [], []
    cursor = 0
    for placeholder in placeholders:
        position = text.find(placeholder, cursor)
        if position < 0:
            raise InvalidRequest(
                "the model's chat template drops turns of this thread, so it cannot be rendered"
            )
        headers.append(text[cursor:position])
        cursor = position + len(placeholder)
        match = specials.match(text, cursor)
        eots.append(match.group(0) if match else "")
        cursor += len(eots[-1])
    return headers, eots, text[cursor:]


# ---------------------------------------------------------------------------------------
# String threads


def _content_forms(content: str) -> list[str]:
    """Forms in which templates commonly write a turn's content, most faithful first."""
    forms = [content, content.strip()]
    if "</think>" in content:
        # Qwen3 drops the reasoning of assistant turns before the last user query.
        forms.append(content.split("</think>")[-1].strip())
    return [form for form in dict.fromkeys(forms) if form]


def _shared_prefix_to_special(header: str, text: str, start: int, specials: re.Pattern[str]) -> int:
    """Length of the header's prefix that the text repeats at ``start``, cut after its last special token.

    Used when the real rendering differs from the placeholder rendering, which happens when a
    template branch depends on content. The content is then searched after the last shared
    special token.
    """
    shared = 0
    while shared < len(header) and start + shared < len(text) and header[shared] == text[start + shared]:
        shared += 1
    cut = 0
    for match in specials.finditer(header, 0, shared):
        if match.end() <= shared:
            cut = match.end()
    return cut


def _locate_turns(
    text: str, turns: list[tuple[str, str]], headers: list[str], specials: re.Pattern[str]
) -> list[tuple[int, int] | None]:
    """Find each turn's content plus end-of-turn token as a character span of ``text``."""
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for (_, content), header in zip(turns, headers, strict=True):
        header_matches = text.startswith(header, cursor)
        search_from = cursor + (
            len(header) if header_matches else _shared_prefix_to_special(header, text, cursor, specials)
        )

        span: tuple[int, int] | None = None
        for form in _content_forms(content):
            position = text.find(form, search_from)
            if position >= 0:
                span = (position, position + len(form))
                break
        if span is None and not content.strip() and header_matches:
            span = (search_from, search_from)  # an empty turn: only its end-of-turn token counts

        if span is None:
            spans.append(None)
            cursor = search_from
            continue
        end = span[1]
        eot = specials.match(text, end)
        if eot:
            end = eot.end()
        spans.append((span[0], end))
        cursor = end
    return spans


def _render_string_thread(tokenizer, thread: StringThreadWire, add_generation_prompt: bool) -> RenderedThread:
    specials = _special_token_pattern(tokenizer)
    roles = [role for role, _ in thread.turns]
    messages = [{"role": role, "content": content} for role, content in thread.turns]
    text = _render_text(tokenizer, messages, add_generation_prompt)
    headers, _, _ = _scaffold(tokenizer, roles, add_generation_prompt, specials)
    spans = _locate_turns(text, list(thread.turns), headers, specials)

    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoding["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(pair) for pair in encoding["offset_mapping"]]
    weights = [0.0] * len(ids)

    for index, (span, weight) in enumerate(zip(spans, turn_weights(thread), strict=True)):
        if weight == 0.0:
            continue
        role, content = thread.turns[index]
        if span is None:
            if not content.strip():
                continue
            raise InvalidRequest(
                f"turn {index} ({role}) has weight {weight} but the chat template rewrote its content "
                f"beyond recognition, so its tokens cannot be weighted; pass it as a tokenized thread"
            )
        start, end = span
        for token_index, (token_start, token_end) in enumerate(offsets):
            if token_end > start and token_start < end:
                weights[token_index] = weight
    return RenderedThread(ids, weights)


# ---------------------------------------------------------------------------------------
# Tokenized threads


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _render_tokenized_thread(
    tokenizer, thread: TokenizedThreadWire, add_generation_prompt: bool
) -> RenderedThread:
    """Splice each turn's given ids into the template's scaffolding, tokenized piece by piece."""
    specials = _special_token_pattern(tokenizer)
    roles = [role for role, _ in thread.turns]
    headers, eots, tail = _scaffold(tokenizer, roles, add_generation_prompt, specials)

    ids: list[int] = []
    weights: list[float] = []
    for (_, turn_ids), header, eot, weight in zip(
        thread.turns, headers, eots, turn_weights(thread), strict=True
    ):
        header_ids = _encode(tokenizer, header)
        eot_ids = _encode(tokenizer, eot)
        ids += header_ids + list(turn_ids) + eot_ids
        weights += [0.0] * len(header_ids) + [weight] * (len(turn_ids) + len(eot_ids))
    tail_ids = _encode(tokenizer, tail)
    ids += tail_ids
    weights += [0.0] * len(tail_ids)
    return RenderedThread(ids, weights)


# ---------------------------------------------------------------------------------------
# Public helpers


def render_thread(
    tokenizer, thread: AnyThreadWire | dict[str, Any], *, add_generation_prompt: bool = False
) -> RenderedThread:
    """Render a string or tokenized thread with the chat template into ids and per-token weights.

    ``add_generation_prompt`` appends the assistant header for generation (weight 0).
    Raises InvalidRequest for an invalid thread or one the template cannot render.
    """
    parsed = parse_thread(thread)
    if isinstance(parsed, TokenizedThreadWire):
        return _render_tokenized_thread(tokenizer, parsed, add_generation_prompt)
    return _render_string_thread(tokenizer, parsed, add_generation_prompt)


def tokenize_thread(tokenizer, thread: StringThreadWire | dict[str, Any]) -> TokenizedThreadWire:
    """Tokenize each turn's content on its own (no template), keeping weights and metadata."""
    parsed = parse_thread(thread)
    if not isinstance(parsed, StringThreadWire):
        raise InvalidRequest("tokenize_thread takes a string thread; this one is already tokenized")
    return TokenizedThreadWire(
        turns=[(role, _encode(tokenizer, content)) for role, content in parsed.turns],
        weights=parsed.weights,
        metadata=parsed.metadata,
    )


def detokenize_thread(tokenizer, thread: TokenizedThreadWire | dict[str, Any]) -> StringThreadWire:
    """Decode each turn's ids back to text, keeping weights and metadata."""
    parsed = parse_thread(thread)
    if not isinstance(parsed, TokenizedThreadWire):
        raise InvalidRequest("detokenize_thread takes a tokenized thread; this one contains strings")
    return StringThreadWire(
        turns=[(role, decode(tokenizer, ids)) for role, ids in parsed.turns],
        weights=parsed.weights,
        metadata=parsed.metadata,
    )


def decode(tokenizer, ids: list[int]) -> str:
    vocab_size = len(tokenizer)
    for token_id in ids:
        if not 0 <= token_id < vocab_size:
            raise InvalidRequest(
                f"token id {token_id} is outside the tokenizer's vocabulary (0..{vocab_size - 1})"
            )
    return tokenizer.decode(ids, skip_special_tokens=False)
