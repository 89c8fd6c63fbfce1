"""Chat-template rendering of threads into token ids and per-token weights, for both families."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from galley.engine.errors import InvalidRequest
from galley.engine.threads import detokenize_thread, render_thread, tokenize_thread
from galley.protocol import StringThreadWire, TokenizedThreadWire

CONVERSATION = [
    ("system", "Be brief."),
    ("user", "Hi there"),
    ("assistant", "Hello!"),
    ("user", "Why?"),
    ("assistant", "Because it rains."),
]
END_OF_TURN = {"llama-3.1": "<|eot_id|>", "qwen3": "<|im_end|>"}


@pytest.fixture(scope="module")
def tokenizers(tiny_llama_dir: Path, tiny_qwen3_dir: Path):
    return {
        "llama-3.1": AutoTokenizer.from_pretrained(tiny_llama_dir),
        "qwen3": AutoTokenizer.from_pretrained(tiny_qwen3_dir),
    }


FAMILIES = ["llama-3.1", "qwen3"]


def template_ids(tokenizer, turns, add_generation_prompt=False) -> list[int]:
    messages = [{"role": role, "content": content} for role, content in turns]
    encoding = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt
    )
    return list(encoding["input_ids"])


def weighted_text(tokenizer, rendered) -> list[str]:
    """Decode each maximal run of weighted tokens."""
    runs, current = [], []
    for token_id, weight in zip(rendered.ids, rendered.weights, strict=True):
        if weight > 0:
            current.append(token_id)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_equal_chat_template(tokenizers, family):
    tokenizer = tokenizers[family]
    rendered = render_thread(tokenizer, StringThreadWire(turns=CONVERSATION))
    assert rendered.ids == template_ids(tokenizer, CONVERSATION)
    assert len(rendered.weights) == len(rendered.ids)


@pytest.mark.parametrize("family", FAMILIES)
def test_default_weights_cover_assistant_turns(tokenizers, family):
    tokenizer = tokenizers[family]
    rendered = render_thread(tokenizer, StringThreadWire(turns=CONVERSATION))
    eot = END_OF_TURN[family]
    assert weighted_text(tokenizer, rendered) == [f"Hello!{eot}", f"Because it rains.{eot}"]


def test_qwen3_think_block_of_final_turn_is_unweighted(tokenizers):
    tokenizer = tokenizers["qwen3"]
    rendered = render_thread(tokenizer, StringThreadWire(turns=CONVERSATION))
    text = tokenizer.decode(rendered.ids)
    assert "<think>\n\n</think>\n\nBecause it rains." in text  # the template adds the empty block
    think_id = tokenizer.convert_tokens_to_ids("<think>")
    position = rendered.ids.index(think_id)
    assert rendered.weights[position] == 0.0
    assert all(weight == 0.0 for weight in rendered.weights[position : position + 4])


@pytest.mark.parametrize("family", FAMILIES)
def test_role_headers_are_never_weighted(tokenizers, family):
    tokenizer = tokenizers[family]
    thread = StringThreadWire(turns=CONVERSATION, weights=[1.0] * len(CONVERSATION))
    rendered = render_thread(tokenizer, thread)
    for token_id, weight in zip(rendered.ids, rendered.weights, strict=True):
        piece = tokenizer.decode([token_id])
        if piece in (
            "system",
            "user",
            "assistant",
            "<|start_header_id|>",
            "<|im_start|>",
            "<|begin_of_text|>",
        ):
            assert weight == 0.0, piece


@pytest.mark.parametrize("family", FAMILIES)
def test_per_turn_weights_apply_to_their_turns(tokenizers, family):
    tokenizer = tokenizers[family]
    thread = StringThreadWire(turns=CONVERSATION, weights=[0.0, 0.5, 0.0, 0.0, 2.0])
    rendered = render_thread(tokenizer, thread)
    eot = END_OF_TURN[family]
    assert weighted_text(tokenizer, rendered) == [f"Hi there{eot}", f"Because it rains.{eot}"]
    assert sorted(set(rendered.weights)) == [0.0, 0.5, 2.0]


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_prompt_is_unweighted_suffix(tokenizers, family):
    tokenizer = tokenizers[family]
    turns = [("user", "Hi there")]
    rendered = render_thread(tokenizer, StringThreadWire(turns=turns), add_generation_prompt=True)
    assert rendered.ids == template_ids(tokenizer, turns, add_generation_prompt=True)
    assert set(rendered.weights) == {0.0}
    suffix = tokenizer.decode(rendered.ids).split("Hi there")[-1]
    assert "assistant" in suffix


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenized_thread_renders_like_string_thread(tokenizers, family):
    tokenizer = tokenizers[family]
    string = StringThreadWire(turns=CONVERSATION, weights=[0.0, 1.0, 1.0, 0.0, 1.0])
    tokenized = tokenize_thread(tokenizer, string)
    assert isinstance(tokenized, TokenizedThreadWire)
    assert tokenized.weights == string.weights

    from_string = render_thread(tokenizer, string)
    from_tokens = render_thread(tokenizer, tokenized)
    assert from_tokens.ids == from_string.ids
    assert from_tokens.weights == from_string.weights


@pytest.mark.parametrize("family", FAMILIES)
def test_detokenize_thread_restores_text(tokenizers, family):
    tokenizer = tokenizers[family]
    string = StringThreadWire(turns=CONVERSATION, metadata={"source": "test"})
    restored = detokenize_thread(tokenizer, tokenize_thread(tokenizer, string).model_dump())
    assert restored.turns == string.turns
    assert restored.metadata == {"source": "test"}


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_assistant_turn_weights_only_end_of_turn(tokenizers, family):
    tokenizer = tokenizers[family]
    rendered = render_thread(tokenizer, StringThreadWire(turns=[("user", "Hi"), ("assistant", "")]))
    assert weighted_text(tokenizer, rendered) == [END_OF_TURN[family]]


def test_earlier_reasoning_dropped_by_qwen3_still_weights_answer(tokenizers):
    tokenizer = tokenizers["qwen3"]
    turns = [
        ("user", "2+2?"),
        ("assistant", "<think>\nadd them\n</think>\n\nFour."),
        ("user", "And 3+3?"),
        ("assistant", "Six."),
    ]
    rendered = render_thread(tokenizer, StringThreadWire(turns=turns))
    assert rendered.ids == template_ids(tokenizer, turns)
    assert weighted_text(tokenizer, rendered) == ["Four.<|im_end|>", "Six.<|im_end|>"]


@pytest.mark.parametrize(
    ("thread", "message"),
    [
        ({"turns": [["robot", "hi"]]}, "role 'robot'"),
        ({"turns": [["user", "hi"]], "weights": [1.0, 0.0]}, "1 turns but 2 weights"),
        ({"turns": []}, "no turns"),
        ({"kind": "pictures", "turns": []}, "thread kind 'pictures'"),
    ],
)
def test_invalid_threads_are_rejected(tokenizers, thread, message):
    with pytest.raises(InvalidRequest, match=message):
        render_thread(tokenizers["llama-3.1"], thread)
