"""Conversation threads: ``StringThread`` (text turns) and ``TokenizedThread`` (token-id turns).

Threads are immutable. ``.user(...)``, ``.assistant(...)`` and the weight methods return new
threads. Each turn carries a training weight. Until a weight method is called, the weights
are the default (assistant turns 1.0, other turns 0.0), which goes over the wire as
``weights: null`` so that the engine applies the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Generic, NamedTuple, Self, TypeVar

from galley.protocol import StringThreadWire, TokenizedThreadWire

ROLES = ("system", "user", "assistant", "tool")

ContentT = TypeVar("ContentT")


class Turn(NamedTuple):
    role: str
    content: str


class TokenizedTurn(NamedTuple):
    role: str
    content: list[int]


def default_weight(role: str) -> float:
    return 1.0 if role == "assistant" else 0.0


class _Thread(Generic[ContentT]):
    """Turns, per-turn weights and metadata shared by both thread kinds."""

    _turn_type: type

    __slots__ = ("_finish_reason", "_turns", "_weights", "metadata")

    def __init__(
        self,
        turns: Iterable[Sequence[Any]] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        weights: Sequence[float] | None = None,
    ):
        checked = tuple(self._check_turn(index, turn) for index, turn in enumerate(turns or ()))
        self._turns: tuple[Any, ...] = checked
        self._weights: tuple[float, ...] | None = None
        if weights is not None:
            self._weights = _check_weights(weights, len(checked))
        # A shallow copy, so that changing one thread's metadata never changes another's.
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._finish_reason: str | None = None

    # -- construction helpers -------------------------------------------------------------

    def _check_turn(self, index: int, turn: Sequence[Any]) -> Any:
        if isinstance(turn, dict):
            turn = (turn.get("role"), turn.get("content"))
        if not isinstance(turn, Sequence) or isinstance(turn, str) or len(turn) != 2:
            raise ValueError(f"turn {index} is {turn!r}; write each turn as a (role, content) pair")
        role, content = turn
        if role not in ROLES:
            raise ValueError(f"turn {index} has role {role!r}; use one of {', '.join(ROLES)}")
        return self._turn_type(role, self._check_content(index, content))

    def _check_content(self, index: int, content: Any) -> Any:
        raise NotImplementedError

    def _replace(
        self, turns: tuple[Any, ...], weights: tuple[float, ...] | None, finish_reason: str | None = None
    ) -> Self:
        new = object.__new__(type(self))
        new._turns = turns
        new._weights = weights
        new.metadata = dict(self.metadata)
        new._finish_reason = finish_reason
        return new

    def _append(self, role: str, content: Any) -> Self:
        turn = self._check_turn(len(self._turns), (role, content))
        weights = None if self._weights is None else (*self._weights, default_weight(role))
        return self._replace((*self._turns, turn), weights)

    def _generated(self, content: Any, finish_reason: str | None) -> Self:
        """Append a generated assistant turn and record why its generation stopped."""
        reply = self._append("assistant", content)
        reply._finish_reason = finish_reason
        return reply

    # -- adding turns ---------------------------------------------------------------------

    def system(self, content: ContentT) -> Self:
        return self._append("system", content)

    def user(self, content: ContentT) -> Self:
        return self._append("user", content)

    def assistant(self, content: ContentT) -> Self:
        return self._append("assistant", content)

    def tool(self, content: ContentT) -> Self:
        return self._append("tool", content)

    # -- reading --------------------------------------------------------------------------

    def get_turns(self) -> list[Any]:
        """Return the turns as named tuples with ``role`` and ``content``."""
        return list(self._turns)

    def last_content(self) -> ContentT:
        if not self._turns:
            raise IndexError("the thread has no turns; add one with .user(...) first")
        return self._turns[-1].content

    def messages(self) -> list[Any]:
        """Return every turn except a final assistant turn: the prompt of a completion."""
        if self._turns and self._turns[-1].role == "assistant":
            return list(self._turns[:-1])
        return list(self._turns)

    def completion(self) -> ContentT | None:
        """Return the content of the final turn if it is an assistant turn, else None."""
        if self._turns and self._turns[-1].role == "assistant":
            return self._turns[-1].content
        return None

    @property
    def finish_reason(self) -> str | None:
        """Why the generation that appended the last turn stopped, or None if no generation did.

        "eos": the model ended its turn. "length": max_gen_len (or the spawn's
        tokens_to_generate) or the model's context length was reached. "kv_cache": the
        prompt left too little of the spawn's kv_cache_len, so the reply is cut short of
        max_gen_len. Weight methods keep it; adding a turn clears it.
        """
        return self._finish_reason

    def turn_weights(self) -> list[float]:
        """Return the training weight of each turn, with the default rule applied."""
        if self._weights is not None:
            return list(self._weights)
        return [default_weight(turn.role) for turn in self._turns]

    # -- weights --------------------------------------------------------------------------

    def with_weight_all_assistant_turns(self) -> Self:
        """Weight every assistant turn 1.0 and every other turn 0.0."""
        weights = tuple(default_weight(turn.role) for turn in self._turns)
        return self._replace(self._turns, weights, self._finish_reason)

    def with_weight_last_assistant_turn(self) -> Self:
        """Weight only the last assistant turn; a thread without one trains on no token."""
        last = max((i for i, turn in enumerate(self._turns) if turn.role == "assistant"), default=None)
        weights = tuple(1.0 if i == last else 0.0 for i in range(len(self._turns)))
        return self._replace(self._turns, weights, self._finish_reason)

    def with_weight_assistant_turns_from_index(self, index: int) -> Self:
        """Weight the assistant turns at turn ``index`` and after; a negative index counts from the end."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int turn index, got {index!r}")
        start = index + len(self._turns) if index < 0 else index
        if not 0 <= start <= len(self._turns):
            raise IndexError(f"index {index} is outside the thread's {len(self._turns)} turns")
        weights = tuple(
            1.0 if i >= start and turn.role == "assistant" else 0.0 for i, turn in enumerate(self._turns)
        )
        return self._replace(self._turns, weights, self._finish_reason)

    # -- equality and display -------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Thread)
        return (
            self._turns == other._turns
            and self.turn_weights() == other.turn_weights()
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]  # metadata is a mutable dict

    def __repr__(self) -> str:
        turns = ", ".join(f"({turn.role!r}, {turn.content!r})" for turn in self._turns)
        extra = "" if self._weights is None else f", weights={list(self._weights)}"
        if self.metadata:
            extra += f", metadata={self.metadata!r}"
        return f"{type(self).__name__}([{turns}]{extra})"


def _check_weights(weights: Sequence[float], turn_count: int) -> tuple[float, ...]:
    if len(weights) != turn_count:
        raise ValueError(f"got {len(weights)} weights for {turn_count} turns; give one weight per turn")
    return tuple(float(weight) for weight in weights)


class StringThread(_Thread[str]):
    """A conversation of text turns, rendered to tokens with the model's chat template.

    ``StringThread([("user", "Hi"), ("assistant", "Hello")], metadata={"id": 7})``
    """

    _turn_type = Turn
    __slots__ = ()

    def _check_content(self, index: int, content: Any) -> str:
        if not isinstance(content, str):
            raise TypeError(f"turn {index} content must be a str, got {type(content).__name__}: {content!r}")
        return content

    def get_turns(self) -> list[Turn]:
        return list(self._turns)

    def to_wire(self) -> StringThreadWire:
        return StringThreadWire(
            turns=[(turn.role, turn.content) for turn in self._turns],
            weights=None if self._weights is None else list(self._weights),
            metadata=self.metadata or None,
        )

    @classmethod
    def from_wire(cls, wire: StringThreadWire) -> StringThread:
        return cls(wire.turns, wire.metadata, weights=wire.weights)

    def to_json(self) -> str:
        return self.to_wire().model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> StringThread:
        """Parse ``to_json()`` output, a list of ``[role, content]`` pairs, or chat messages.

        Chat messages are ``{"messages": [{"role": ..., "content": ...}, ...]}`` or the bare list.
        """
        data = json.loads(text)
        if isinstance(data, dict) and "messages" in data and "turns" not in data:
            return cls(data["messages"], data.get("metadata"))
        if isinstance(data, list):
            return cls(data)
        return cls.from_wire(StringThreadWire.model_validate(data))


class TokenizedThread(_Thread[list[int]]):
    """A conversation whose turns are token ids, as ``tokenize_thread`` returns them."""

    _turn_type = TokenizedTurn
    __slots__ = ()

    def _check_content(self, index: int, content: Any) -> list[int]:
        if isinstance(content, str | bytes) or not isinstance(content, Iterable):
            raise TypeError(f"turn {index} content must be a list of token ids, got {content!r}")
        ids = list(content)
        for token in ids:
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise TypeError(f"turn {index} has token id {token!r}; token ids are non-negative ints")
        return ids

    def get_turns(self) -> list[TokenizedTurn]:
        # Copies of the id lists, so that editing them leaves the thread unchanged.
        return [TokenizedTurn(turn.role, list(turn.content)) for turn in self._turns]

    def last_content(self) -> list[int]:
        return list(super().last_content())

    def completion(self) -> list[int] | None:
        content = super().completion()
        return None if content is None else list(content)

    def len_last_turn(self) -> int:
        """Return the number of tokens in the last turn."""
        return len(super().last_content())

    def to_wire(self) -> TokenizedThreadWire:
        return TokenizedThreadWire(
            turns=[(turn.role, list(turn.content)) for turn in self._turns],
            weights=None if self._weights is None else list(self._weights),
            metadata=self.metadata or None,
        )

    @classmethod
    def from_wire(cls, wire: TokenizedThreadWire) -> TokenizedThread:
        return cls(wire.turns, wire.metadata, weights=wire.weights)

    def to_json(self) -> str:
        return self.to_wire().model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> TokenizedThread:
        data = json.loads(text)
        if isinstance(data, list):
            return cls(data)
        return cls.from_wire(TokenizedThreadWire.model_validate(data))


AnyThread = StringThread | TokenizedThread


def thread_to_wire(thread: AnyThread) -> StringThreadWire | TokenizedThreadWire:
    if not isinstance(thread, StringThread | TokenizedThread):
        raise TypeError(
            f"expected a StringThread or TokenizedThread, got {type(thread).__name__}: {thread!r}"
        )
    return thread.to_wire()


def thread_from_wire(data: dict[str, Any]) -> AnyThread:
    """Build a thread from a wire dict, choosing the class by its ``kind``."""
    if data.get("kind") == "tokens":
        return TokenizedThread.from_wire(TokenizedThreadWire.model_validate(data))
    return StringThread.from_wire(StringThreadWire.model_validate(data))
