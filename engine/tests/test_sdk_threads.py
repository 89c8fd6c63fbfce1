"""StringThread and TokenizedThread: construction, immutability, weights, JSON and wire forms."""

from __future__ import annotations

import json

import pytest

from galley import StringThread, TokenizedThread
from galley.protocol import StringThreadWire, TokenizedThreadWire
from galley.sdk.threads import thread_from_wire


def chat() -> StringThread:
    return StringThread([("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")])


def test_builders_return_new_threads():
    empty = StringThread()
    one = empty.user("Hi")
    two = one.assistant("Hello")
    assert empty.get_turns() == []
    assert one.get_turns() == [("user", "Hi")]
    assert two.get_turns() == [("user", "Hi"), ("assistant", "Hello")]
    three = two.system("sys").tool("{}")
    assert [turn.role for turn in three.get_turns()] == ["user", "assistant", "system", "tool"]
    assert len(two.get_turns()) == 2


def test_turns_are_named_tuples():
    turn = chat().get_turns()[1]
    assert turn.role == "user"
    assert turn.content == "Hi"
    assert tuple(turn) == ("user", "Hi")


def test_last_content_messages_completion():
    finished = chat().assistant("Goodbye")
    assert finished.last_content() == "Goodbye"
    assert finished.completion() == "Goodbye"
    assert finished.messages() == chat().get_turns()
    open_thread = chat()
    assert open_thread.completion() is None
    assert open_thread.messages() == open_thread.get_turns()


def test_last_content_of_empty_thread_raises():
    with pytest.raises(IndexError, match="no turns"):
        StringThread().last_content()


def test_invalid_role_is_rejected_with_index():
    with pytest.raises(ValueError, match="turn 1 has role 'bot'"):
        StringThread([("user", "a"), ("bot", "b")])


def test_non_string_content_is_rejected():
    with pytest.raises(TypeError, match="turn 0 content must be a str"):
        StringThread([("user", 3)])


def test_malformed_turn_is_rejected():
    with pytest.raises(ValueError, match="as a \\(role, content\\) pair"):
        StringThread([("user", "a", "b")])


def test_default_weights_mark_assistant_turns():
    thread = StringThread([("user", "q"), ("assistant", "a"), ("user", "q2"), ("assistant", "a2")])
    assert thread.turn_weights() == [0.0, 1.0, 0.0, 1.0]
    assert thread.to_wire().weights is None


def test_weight_last_assistant_turn():
    thread = StringThread([("user", "q"), ("assistant", "a"), ("user", "q2"), ("assistant", "a2")])
    weighted = thread.with_weight_last_assistant_turn()
    assert weighted.turn_weights() == [0.0, 0.0, 0.0, 1.0]
    assert weighted.to_wire().weights == [0.0, 0.0, 0.0, 1.0]
    assert thread.to_wire().weights is None


def test_weight_last_assistant_turn_without_assistant():
    assert StringThread([("user", "q")]).with_weight_last_assistant_turn().turn_weights() == [0.0]


def test_weight_all_assistant_turns_is_explicit():
    thread = StringThread([("user", "q"), ("assistant", "a")]).with_weight_last_assistant_turn()
    all_turns = thread.assistant("more").with_weight_all_assistant_turns()
    assert all_turns.turn_weights() == [0.0, 1.0, 1.0]
    assert all_turns.to_wire().weights == [0.0, 1.0, 1.0]


def test_weight_assistant_turns_from_index():
    thread = StringThread(
        [("user", "q"), ("assistant", "a"), ("user", "q2"), ("assistant", "a2"), ("tool", "t")]
    )
    assert thread.with_weight_assistant_turns_from_index(2).turn_weights() == [0, 0, 0, 1, 0]
    assert thread.with_weight_assistant_turns_from_index(0).turn_weights() == [0, 1, 0, 1, 0]
    assert thread.with_weight_assistant_turns_from_index(-4).turn_weights() == [0, 1, 0, 1, 0]
    with pytest.raises(IndexError, match="outside the thread's 5 turns"):
        thread.with_weight_assistant_turns_from_index(6)
    with pytest.raises(TypeError, match="index must be an int"):
        thread.with_weight_assistant_turns_from_index(1.5)  # type: ignore[arg-type]


def test_appending_after_explicit_weights_uses_role_default():
    thread = StringThread([("user", "q"), ("assistant", "a")]).with_weight_last_assistant_turn()
    extended = thread.user("q2").assistant("a2")
    assert extended.turn_weights() == [0.0, 1.0, 0.0, 1.0]


def test_weights_length_must_match_turns():
    with pytest.raises(ValueError, match="2 weights for 1 turns"):
        StringThread([("user", "q")], weights=[0.0, 1.0])


def test_metadata_is_copied_per_thread():
    source = {"id": 7}
    thread = StringThread([("user", "q")], metadata=source)
    child = thread.assistant("a")
    child.metadata["id"] = 8
    source["id"] = 9
    assert thread.metadata == {"id": 7}
    assert child.metadata == {"id": 8}


def test_json_roundtrip_keeps_weights_and_metadata():
    thread = chat().assistant("Bye!").with_weight_last_assistant_turn()
    thread.metadata["sample"] = 3
    restored = StringThread.from_json(thread.to_json())
    assert restored == thread
    assert restored.turn_weights() == thread.turn_weights()
    assert restored.metadata == {"sample": 3}


def test_from_json_accepts_chat_messages():
    text = json.dumps(
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    )
    assert StringThread.from_json(text).get_turns() == [("user", "Hi"), ("assistant", "Yo")]
    assert StringThread.from_json('[["user", "Hi"]]').get_turns() == [("user", "Hi")]


def test_wire_roundtrip():
    thread = chat().with_weight_all_assistant_turns()
    wire = thread.to_wire()
    assert isinstance(wire, StringThreadWire)
    assert wire.kind == "string"
    assert thread_from_wire(wire.model_dump()) == thread


def test_equality_compares_turns_weights_metadata():
    a = StringThread([("user", "q"), ("assistant", "a")])
    assert a == StringThread([("user", "q"), ("assistant", "a")])
    assert a != a.with_weight_assistant_turns_from_index(2)
    assert a != StringThread([("user", "q"), ("assistant", "a")], metadata={"x": 1})
    assert a != TokenizedThread([("user", [1]), ("assistant", [2])])


def test_tokenized_thread_basics():
    thread = TokenizedThread([("user", [1, 2, 3])]).assistant([4, 5])
    assert thread.len_last_turn() == 2
    assert thread.last_content() == [4, 5]
    assert thread.completion() == [4, 5]
    assert thread.messages() == [("user", [1, 2, 3])]
    assert thread.turn_weights() == [0.0, 1.0]


def test_tokenized_thread_is_not_changed_through_returned_lists():
    thread = TokenizedThread([("user", [1, 2])])
    thread.last_content().append(99)
    thread.get_turns()[0].content.append(98)
    assert thread.last_content() == [1, 2]


def test_tokenized_thread_rejects_bad_ids():
    with pytest.raises(TypeError, match="token id -1"):
        TokenizedThread([("user", [1, -1])])
    with pytest.raises(TypeError, match="list of token ids"):
        TokenizedThread([("user", "text")])


def test_tokenized_thread_json_and_wire_roundtrip():
    thread = TokenizedThread([("user", [1, 2]), ("assistant", [3])], metadata={"k": "v"})
    thread = thread.with_weight_last_assistant_turn()
    assert TokenizedThread.from_json(thread.to_json()) == thread
    wire = thread.to_wire()
    assert isinstance(wire, TokenizedThreadWire)
    restored = thread_from_wire(wire.model_dump())
    assert isinstance(restored, TokenizedThread)
    assert restored == thread


def test_len_last_turn_of_empty_thread_raises():
    with pytest.raises(IndexError):
        TokenizedThread().len_last_turn()


def test_finish_reason_follows_generated_turn():
    prompt = StringThread([("user", "Hi")])
    reply = prompt._generated("Hello", "kv_cache")
    assert prompt.finish_reason is None
    assert reply.finish_reason == "kv_cache"
    assert reply.completion() == "Hello"
    assert reply == prompt.assistant("Hello")  # the reason is not part of the thread's value

    # Reweighting keeps the reason, because the last turn is still the generated one.
    assert reply.with_weight_last_assistant_turn().finish_reason == "kv_cache"
    assert reply.with_weight_all_assistant_turns().finish_reason == "kv_cache"
    assert reply.with_weight_assistant_turns_from_index(0).finish_reason == "kv_cache"

    # A new turn is not generated, so it clears the reason, and wire and JSON copies carry none.
    assert reply.user("More").finish_reason is None
    assert StringThread.from_json(reply.to_json()).finish_reason is None
    assert TokenizedThread([("user", [1])])._generated([2, 3], "eos").finish_reason == "eos"
