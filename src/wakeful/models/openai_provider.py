"""Any OpenAI-compatible endpoint, through the official ``openai`` SDK (async client).

OpenAI, OpenRouter, vLLM, llama.cpp's server and Ollama all speak the chat completions
protocol, so one provider serves them all; only the base URL and the key differ.

The request goes through the SDK's documented low-level ``client.post`` with the JSON
body Wakeful builds itself and ``cast_to=object`` (chunks arrive as plain JSON). The
SDK still does everything that matters (auth, headers, SSE decoding, mapping 429/5xx
to ``RateLimitError``/``APIStatusError``); what is skipped is its per-call TypedDict
transformation of the request and its per-chunk pydantic models, about 0.8 ms of CPU
per call, which is the largest single cost when a thousand agents call at once.

Streamed tool calls arrive as deltas keyed by ``index`` (id and name first, the
arguments in pieces); :class:`StreamAssembler` puts them back together and tolerates
servers that omit the index or the id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from wakeful.ids import new_id
from wakeful.models import json_tools
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

_CHUNKS = openai.AsyncStream[object]


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


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


class StreamAssembler:
    """Turns ``chat.completion.chunk`` JSON objects into Wakeful stream events and, at
    the end, the whole response."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.calls: dict[int, _PartialCall] = {}
        self.finish_reason = "stop"
        self.usage = Usage()
        self.server_model = ""

    def feed(self, chunk: Any) -> list[StreamEvent]:
        if not isinstance(chunk, dict):
            return []
        events: list[StreamEvent] = []
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        self.server_model = chunk.get("model") or self.server_model
        for choice in chunk.get("choices") or ():
            if choice.get("index") not in (0, None):
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.text.append(content)
                events.append(TextDelta(content))
            for piece in delta.get("tool_calls") or ():
                events.append(self._call_piece(piece))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _call_piece(self, piece: dict[str, Any]) -> ToolCallDelta:
        index = piece.get("index")
        call_id = piece.get("id")
        if index is None:  # some servers omit it: a new id starts a new call
            known = {c.id for c in self.calls.values()}
            starts_new = not self.calls or (call_id and call_id not in known)
            index = len(self.calls) if starts_new else max(self.calls)
        partial = self.calls.setdefault(index, _PartialCall())
        function = piece.get("function") or {}
        name = function.get("name")
        arguments = function.get("arguments") or ""
        if call_id:
            partial.id = call_id
        if name and name != partial.name:
            partial.name += name
        partial.arguments.append(arguments)
        return ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments)

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
    """A non-streamed ``chat.completion`` (JSON) as a Wakeful response."""
    if not isinstance(completion, dict):
        completion = {}
    model = completion.get("model") or fallback_model
    tokens = _usage(completion.get("usage"))
    choices = completion.get("choices") or []
    if not choices:
        return ModelResponse(Message(role="assistant"), usage=tokens, model=model)
    choice = choices[0]
    message = choice.get("message") or {}
    calls = tuple(
        ToolCall(id=c.get("id") or new_id("call"), name=(c.get("function") or {}).get("name") or "",
                 arguments=(c.get("function") or {}).get("arguments") or "")
        for c in message.get("tool_calls") or () if isinstance(c, dict))
    reply = Message(role="assistant", content=message.get("content"), tool_calls=calls)
    return ModelResponse(reply, usage=tokens, finish_reason=choice.get("finish_reason") or "stop",
                         model=model)


class OpenAIProvider(Provider):
    _tool_mode: str | None = None  # "native" or "json_schema", once ``auto`` has asked

    async def tool_mode(self) -> str:
        """``native`` or ``json_schema`` (``auto`` asks the server once)."""
        configured = self.config.tool_calls
        if configured != "auto":
            return configured
        if self._tool_mode is None:
            self._tool_mode = await self._probe_tool_mode()
        return self._tool_mode

    async def _probe_tool_mode(self) -> str:
        """llama.cpp's ``/props`` says whether the chat template supports tool calls;
        a server without that endpoint is assumed to have native tool calling."""
        root = (self.config.base_url or "").removesuffix("/v1")
        if not root:
            return "native"
        try:
            with self.clients.lease() as client:
                props = await client.get(f"{root}/props", cast_to=object)
        except Exception:
            return "native"
        caps = props.get("chat_template_caps") if isinstance(props, dict) else None
        if isinstance(caps, dict) and caps.get("supports_tool_calls") is False:
            return "json_schema"
        return "native"

    def _make_client(self, api_key: str | None, http_client: httpx2.AsyncClient) -> Any:
        return openai.AsyncOpenAI(api_key=api_key or "not-needed", base_url=self.config.base_url,
                                  max_retries=0, http_client=http_client)

    def _aiohttp_client_class(self) -> Callable[..., httpx2.AsyncClient]:
        return openai.DefaultAioHttpClient

    def model(self, model: str) -> RemoteModel:
        return OpenAIModel(self, model)


_SAMPLING = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "stop", "seed")


class OpenAIModel(RemoteModel):
    provider: OpenAIProvider

    def params(self, messages: list[Message], tools: list[ToolSpec],
               tool_mode: str = "native") -> dict[str, Any]:
        """The request body, exactly as sent."""
        config = self.provider.config
        params: dict[str, Any] = dict(config.extra_body)
        params["model"] = self.model
        if tools and tool_mode == "json_schema":
            params["messages"] = json_tools.plain_messages(messages, tools)
            params["response_format"] = json_tools.response_format(
                tools, messages, config.max_tool_rounds, config.max_argument_chars)
        else:
            params["messages"] = [to_openai_message(m) for m in messages]
            if tools:
                params["tools"] = [t.to_openai() for t in tools]
        if config.max_output_tokens is not None:
            params["max_tokens"] = config.max_output_tokens
        for name in _SAMPLING:
            value = getattr(config, name)
            if value is not None:
                params[name] = value
        return params

    async def _attempt(self, messages: list[Message], tools: list[ToolSpec], *, stream: bool
                       ) -> AsyncIterator[StreamEvent]:
        mode = await self.provider.tool_mode() if tools else "native"
        if mode == "json_schema":
            async for event in self._json_attempt(messages, tools, stream=stream):
                yield event
            return
        async for event in self._request(self.params(messages, tools), stream=stream):
            yield event

    async def _json_attempt(self, messages: list[Message], tools: list[ToolSpec], *,
                            stream: bool) -> AsyncIterator[StreamEvent]:
        """One request in ``json_schema`` mode: the streamed JSON is not shown as text;
        a final answer is, once parsed."""
        body = self.params(messages, tools, "json_schema")
        async for event in self._request(body, stream=stream):
            if isinstance(event, Completed):
                response = json_tools.parse_reply(event.response)
                if response.message.content and not response.message.tool_calls:
                    yield TextDelta(response.message.content)
                yield Completed(response)

    async def _request(self, body: dict[str, Any], *, stream: bool
                       ) -> AsyncIterator[StreamEvent]:
        with self.provider.clients.lease() as client:
            if not stream:
                completion = await client.post("/chat/completions", body=body, cast_to=object)
                yield Completed(from_completion(completion, self.name))
                return
            body["stream"] = True
            if self.provider.config.stream_usage:
                body["stream_options"] = {"include_usage": True}
            chunks = await client.post("/chat/completions", body=body, cast_to=object,
                                       stream=True, stream_cls=_CHUNKS)
            assembler = StreamAssembler(self.name)
            async with chunks:  # closes the HTTP response however this ends
                async for chunk in chunks:
                    for event in assembler.feed(chunk):
                        yield event
            yield Completed(assembler.response())
