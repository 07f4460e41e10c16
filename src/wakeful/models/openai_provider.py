"""Any OpenAI-compatible endpoint, through the official ``openai`` SDK (async client).

OpenAI, OpenRouter, vLLM, llama.cpp's server and Ollama all speak the chat completions
protocol, so one provider serves them all; only the base URL and the key differ.
Streamed tool calls arrive as deltas keyed by ``index`` (id and name first, the
arguments in pieces); :class:`StreamAssembler` puts them back together and tolerates
servers that omit the index or the id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai

from wakeful.ids import new_id
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
from wakeful.models.remote import Provider, RemoteModel, http_client


def to_openai_message(message: Message) -> dict[str, Any]:
    """A stored message in the exact shape the API accepts."""
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant":
        if message.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in message.tool_calls]
        elif message.content is None:
            data["content"] = ""  # an empty reply, kept so the conversation stays whole
    elif message.role == "tool":
        data["tool_call_id"] = message.tool_call_id
        data["content"] = message.content or ""
    elif message.content is None:
        data["content"] = ""
    return data


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAssembler:
    """Turns ``chat.completion.chunk`` objects into Wakeful stream events and, at the
    end, the whole response."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.calls: dict[int, _PartialCall] = {}
        self.finish_reason = "stop"
        self.usage = Usage()
        self.server_model = ""

    def feed(self, chunk: Any) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if getattr(chunk, "usage", None) is not None:
            self.usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
        self.server_model = getattr(chunk, "model", "") or self.server_model
        for choice in chunk.choices or ():
            if choice.index not in (0, None):
                continue
            delta = choice.delta
            if delta is not None and delta.content:
                self.text.append(delta.content)
                events.append(TextDelta(delta.content))
            for piece in (delta.tool_calls if delta is not None else None) or ():
                events.append(self._call_piece(piece))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        return events

    def _call_piece(self, piece: Any) -> ToolCallDelta:
        index = piece.index
        if index is None:  # some servers omit it: a new id starts a new call
            known = {c.id for c in self.calls.values()}
            index = len(self.calls) if (piece.id and piece.id not in known) or not self.calls \
                else max(self.calls)
        partial = self.calls.setdefault(index, _PartialCall())
        function = piece.function
        name = function.name if function is not None else None
        arguments = (function.arguments if function is not None else None) or ""
        if piece.id:
            partial.id = piece.id
        if name:
            partial.name += name if partial.name != name else ""
        partial.arguments.append(arguments)
        return ToolCallDelta(index=index, id=piece.id, name=name, arguments=arguments)

    def response(self) -> ModelResponse:
        calls = tuple(
            ToolCall(id=p.id or new_id("call"), name=p.name, arguments="".join(p.arguments))
            for _, p in sorted(self.calls.items()))
        content = "".join(self.text) or None
        finish = self.finish_reason
        if calls and finish == "stop":
            finish = "tool_calls"
        return ModelResponse(Message(role="assistant", content=content, tool_calls=calls),
                             usage=self.usage, finish_reason=finish,
                             model=self.server_model or self.model)


def from_completion(completion: Any, fallback_model: str) -> ModelResponse:
    """A non-streamed ``chat.completion`` as a Wakeful response."""
    usage = completion.usage
    tokens = Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else Usage()
    if not completion.choices:
        return ModelResponse(Message(role="assistant"), usage=tokens,
                             model=completion.model or fallback_model)
    choice = completion.choices[0]
    calls = tuple(
        ToolCall(id=c.id or new_id("call"), name=c.function.name or "",
                 arguments=c.function.arguments or "")
        for c in choice.message.tool_calls or () if getattr(c, "function", None) is not None)
    message = Message(role="assistant", content=choice.message.content, tool_calls=calls)
    return ModelResponse(message, usage=tokens, finish_reason=choice.finish_reason or "stop",
                         model=completion.model or fallback_model)


class OpenAIProvider(Provider):
    def _make_client(self, api_key: str | None) -> Any:
        return openai.AsyncOpenAI(api_key=api_key or "not-needed", base_url=self.config.base_url,
                                  max_retries=0, http_client=http_client(self.config))

    def model(self, model: str) -> RemoteModel:
        return OpenAIModel(self, model)


class OpenAIModel(RemoteModel):
    def _params(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        config = self.provider.config
        params: dict[str, Any] = {"model": self.model,
                                  "messages": [to_openai_message(m) for m in messages]}
        if tools:
            params["tools"] = [t.to_openai() for t in tools]
        if config.max_output_tokens is not None:
            params["max_tokens"] = config.max_output_tokens
        if config.temperature is not None:
            params["temperature"] = config.temperature
        return params

    async def _attempt(self, messages: list[Message], tools: list[ToolSpec], *, stream: bool,
                       timeout_s: float) -> AsyncIterator[StreamEvent]:
        client = self.provider.client
        params = self._params(messages, tools)
        if not stream:
            async with asyncio.timeout(timeout_s):
                completion = await client.chat.completions.create(**params)
            yield Completed(from_completion(completion, self.name))
            return
        if self.provider.config.stream_usage:
            params["stream_options"] = {"include_usage": True}
        async with asyncio.timeout(timeout_s):
            chunks = await client.chat.completions.create(**params, stream=True)
        assembler = StreamAssembler(self.name)
        async with chunks:  # closes the HTTP response however this ends
            iterator = chunks.__aiter__()
            while True:
                try:
                    async with asyncio.timeout(timeout_s):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                for event in assembler.feed(chunk):
                    yield event
        yield Completed(assembler.response())
