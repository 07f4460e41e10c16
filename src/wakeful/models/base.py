"""The one small interface every model provider implements.

Conversations are kept in the OpenAI chat shape (system/user/assistant/tool messages
with ``tool_calls``), the lingua franca of the providers Wakeful targets, so a
provider translates at most once and stored conversations stay readable.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to call a tool. ``arguments`` is the raw JSON text the model
    produced: it may be malformed, and checking it is the tool layer's job."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        fn = data.get("function", {})
        return cls(id=data["id"], name=fn.get("name", ""), arguments=fn.get("arguments", ""))


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            role=data["role"],
            content=data.get("content"),
            tool_calls=tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ModelResponse:
    message: Message
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    model: str = ""
    cost: float | None = None  # from the provider's price table; None: no price known
    # What the provider measured about the call, recorded on the ``model.call`` event:
    # ``latency_ms`` (the model's own time, one attempt), ``queued_ms`` (waiting for a
    # concurrency slot or a rate limit), ``attempts``, ``configured_model``,
    # ``truncated`` (cut off by max_tokens) and the like. Empty for scripted models.
    call_info: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        """The reply was cut off by the output-token limit (``finish_reason: length``)."""
        return self.finish_reason == "length"


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's text, as it streams."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call, as it streams (``index`` identifies the call)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Completed:
    """The last stream event: the whole response, assembled."""

    response: ModelResponse


StreamEvent = TextDelta | ToolCallDelta | Completed


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a model is told about a tool: its name, purpose and JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class Model(abc.ABC):
    """A chat model with tool calling.

    Implementations must be safe to call from many tasks at once: the runtime shares one
    instance between all tasks that name the same model.
    """

    name: str = "model"

    @abc.abstractmethod
    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        """Return the assistant's next message."""

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[StreamEvent]:
        """Yield deltas, then exactly one :class:`Completed`. Default: no deltas."""
        yield Completed(await self.complete(messages, tools))

    async def aclose(self) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Release connections; called once when the runtime shuts down."""
