"""Anthropic's Messages API, through the official ``anthropic`` SDK (async client).

The interface fits without strain: a conversation stored in the OpenAI shape is
translated once per call (system messages become ``system``, tool calls become
``tool_use`` blocks, tool results become ``tool_result`` blocks in a user turn,
consecutive turns of one role are merged as the API requires), and the streamed
``content_block_*`` events map onto the same TextDelta/ToolCallDelta events. Limits,
retries, timeouts and accounting come from :class:`~wakeful.models.remote.RemoteModel`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx2

from wakeful.models.base import (
    Completed,
    Message,
    ModelResponse,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from wakeful.models.remote import Provider, RemoteModel

DEFAULT_MAX_TOKENS = 4096  # the API requires a bound; used when max_output_tokens is unset
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls",
                 "max_tokens": "length"}


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"_invalid_json": arguments}
    return value if isinstance(value, dict) else {"_not_an_object": value}


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, turns) for the Messages API."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        if message.role == "system":
            system.append(message.content or "")
        elif message.role == "user":
            add("user", [{"type": "text", "text": message.content or "(empty)"}])
        elif message.role == "assistant":
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name,
                        "input": _tool_input(c.arguments)} for c in message.tool_calls]
            add("assistant", blocks)
        else:
            add("user", [{"type": "tool_result", "tool_use_id": message.tool_call_id,
                          "content": message.content or ""}])
    return "\n\n".join(system), turns


class _Assembler:
    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.calls: dict[int, list[str]] = {}  # tool ordinal -> [id, name, arguments...]
        self.block_to_call: dict[int, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason = "end_turn"

    def feed(self, event: Any) -> list[StreamEvent]:
        kind = event.type
        if kind == "message_start":
            self.input_tokens = event.message.usage.input_tokens or 0
            self.output_tokens = event.message.usage.output_tokens or 0
        elif kind == "content_block_start" and event.content_block.type == "tool_use":
            ordinal = len(self.calls)
            self.block_to_call[event.index] = ordinal
            block = event.content_block
            self.calls[ordinal] = [block.id, block.name]
            return [ToolCallDelta(index=ordinal, id=block.id, name=block.name)]
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta" and delta.text:
                self.text.append(delta.text)
                return [TextDelta(delta.text)]
            if delta.type == "input_json_delta" and event.index in self.block_to_call:
                ordinal = self.block_to_call[event.index]
                self.calls[ordinal].append(delta.partial_json)
                return [ToolCallDelta(index=ordinal, arguments=delta.partial_json)]
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            if event.usage is not None and event.usage.output_tokens is not None:
                self.output_tokens = event.usage.output_tokens
        return []

    def response(self) -> ModelResponse:
        calls = tuple(ToolCall(id=parts[0], name=parts[1], arguments="".join(parts[2:]) or "{}")
                      for _, parts in sorted(self.calls.items()))
        message = Message(role="assistant", content="".join(self.text) or None, tool_calls=calls)
        return ModelResponse(message, usage=Usage(self.input_tokens, self.output_tokens),
                             finish_reason=_STOP_REASONS.get(self.stop_reason, self.stop_reason),
                             model=self.model)


def from_message(reply: Any, fallback_model: str) -> ModelResponse:
    text = "".join(b.text for b in reply.content if b.type == "text")
    calls = tuple(ToolCall(id=b.id, name=b.name, arguments=json.dumps(b.input))
                  for b in reply.content if b.type == "tool_use")
    usage = Usage(reply.usage.input_tokens or 0, reply.usage.output_tokens or 0)
    stop = reply.stop_reason or "end_turn"
    return ModelResponse(Message(role="assistant", content=text or None, tool_calls=calls),
                         usage=usage, finish_reason=_STOP_REASONS.get(stop, stop),
                         model=reply.model or fallback_model)


class AnthropicProvider(Provider):
    def _make_client(self, api_key: str | None, http_client: httpx2.AsyncClient) -> Any:
        return anthropic.AsyncAnthropic(api_key=api_key or "not-needed",
                                        base_url=self.config.base_url, max_retries=0,
                                        http_client=http_client)

    def _aiohttp_client_class(self) -> Callable[..., httpx2.AsyncClient]:
        return anthropic.DefaultAioHttpClient

    def model(self, model: str) -> RemoteModel:
        return AnthropicModel(self, model)


class AnthropicModel(RemoteModel):
    def _params(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        config = self.provider.config
        system, turns = to_anthropic(messages)
        params: dict[str, Any] = {"model": self.model, "messages": turns,
                                  "max_tokens": config.max_output_tokens or DEFAULT_MAX_TOKENS}
        if system:
            params["system"] = system
        if tools:
            params["tools"] = [{"name": t.name, "description": t.description,
                                "input_schema": t.parameters} for t in tools]
        if config.stop:
            params["stop_sequences"] = config.stop
        # Fields the SDK's ``create`` has no argument for go in its ``extra_body``,
        # merged into the request body (sampling fields, server-specific ones).
        extra: dict[str, Any] = dict(config.extra_body)
        if config.temperature is not None:
            extra["temperature"] = min(1.0, config.temperature)
        if config.top_p is not None:
            extra["top_p"] = config.top_p
        if extra:
            params["extra_body"] = extra
        return params

    async def _attempt(self, messages: list[Message], tools: list[ToolSpec], *, stream: bool
                       ) -> AsyncIterator[StreamEvent]:
        params = self._params(messages, tools)
        with self.provider.clients.lease() as client:
            if not stream:
                reply = await client.messages.create(**params)
                yield Completed(from_message(reply, self.name))
                return
            events = await client.messages.create(**params, stream=True)
            assembler = _Assembler(self.name)
            async with events:
                async for event in events:
                    for item in assembler.feed(event):
                        yield item
            yield Completed(assembler.response())
