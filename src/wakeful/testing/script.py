"""What the model server is scripted with (:class:`Reply`, with its tool calls) and what
it records of each request (:class:`Received`), apart from the server itself so tests
and responders can build replies without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """A tool call the server will send. ``arguments`` is sent verbatim: it may be
    deliberately malformed JSON."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """How the server answers one request."""

    text: str | None = "ok"
    tool_calls: Sequence[FakeToolCall] = ()
    status: int = 200
    error: str = "scripted failure"
    retry_after: float | None = None  # seconds, sent as ``Retry-After`` with the status
    latency_s: float | None = None  # before the first byte; None: the server's default
    hang: bool = False  # never answer; wait until the client goes away
    hang_after_chunks: int | None = None  # streaming: send this many chunks, then hang
    chunk_delay_s: float = 0.0  # streaming: pause between chunks
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens; None: estimated
    finish_reason: str | None = None  # None: "tool_calls" if there are calls, else "stop"

    @staticmethod
    def call(name: str, arguments: dict[str, Any] | str = "{}", text: str | None = None,
             **kwargs: Any) -> Reply:
        """A reply with one tool call (``arguments`` as a dict, or raw text)."""
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return Reply(text=text, tool_calls=(FakeToolCall(name, raw),), **kwargs)


@dataclass(slots=True)
class Received:
    """One request as the server saw it."""

    path: str
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    started: float  # time.monotonic() when the body had been read
    stream: bool = False
    status: int = 0
    finished: float | None = None  # when the last byte was sent
    disconnected: bool = False  # the client went away before the reply was complete


Responder = Callable[[dict[str, Any]], Reply]


def tool_steps(steps: int, tool: str = "note", reply: str = "done") -> Responder:
    """A model that calls ``tool`` (with new arguments each time, so no loop guard
    trips) until the conversation holds ``steps`` tool results, then answers ``reply``."""

    def respond(body: dict[str, Any]) -> Reply:
        done = sum(1 for m in body.get("messages") or () if m.get("role") == "tool")
        if done < steps:
            return Reply.call(tool, {"text": f"step {done}"})
        return Reply(text=reply)

    return respond
