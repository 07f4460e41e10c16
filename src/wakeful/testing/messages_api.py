"""The Anthropic wire format of the model server: ``POST /v1/messages``, Messages API
JSON or its named SSE events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wakeful.testing.connection import _Client
from wakeful.testing.handling import Handling
from wakeful.testing.script import Reply
from wakeful.testing.wire import _pieces, _words


class AnthropicMessages(Handling):
    """The model server's Anthropic endpoint."""

    # Anthropic ---------------------------------------------------------
    async def _messages(self, request: Request) -> Response:
        # Anthropic's SDK sends ``x-api-key`` or, in recent versions, a bearer token.
        begun = await self._begin(request, "x-api-key", "authorization")
        if isinstance(begun, Response):
            return begun
        record, body = begun
        if not isinstance(body.get("max_tokens"), int) or not body.get("messages"):
            record.status = 400
            return JSONResponse({"type": "error", "error": {
                "type": "invalid_request_error",
                "message": "'max_tokens' and 'messages' are required"}}, 400)
        reply = self._next(body)
        return await self._respond(
            request, record, reply,
            lambda status, message: {"type": "error", "error": {
                "type": "rate_limit_error" if status == 429 else "api_error",
                "message": message}},
            lambda c: self._messages_stream(body, reply, c),
            lambda: self._messages_body(body, reply))

    def _stop_reason(self, reply: Reply) -> str:
        if reply.finish_reason is not None:
            return {"stop": "end_turn", "length": "max_tokens"}.get(reply.finish_reason,
                                                                      reply.finish_reason)
        return "tool_use" if reply.tool_calls else "end_turn"

    def _messages_body(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for call_id, call in zip(self._call_ids(reply), reply.tool_calls, strict=True):
            try:
                arguments = json.loads(call.arguments)
            except ValueError:
                arguments = {"_unparsed": call.arguments}
            content.append({"type": "tool_use", "id": call_id, "name": call.name,
                            "input": arguments})
        prompt, completion = self._usage(body, reply)
        return {"id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
                "model": body["model"], "content": content,
                "stop_reason": self._stop_reason(reply), "stop_sequence": None,
                "usage": {"input_tokens": prompt, "output_tokens": completion}}

    async def _messages_stream(self, body: dict[str, Any], reply: Reply, client: _Client
                               ) -> AsyncIterator[str]:
        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        prompt, completion = self._usage(body, reply)
        events = [event("message_start", {"message": {
            "id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
            "model": body["model"], "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": 1}}})]
        index = 0
        if reply.text:
            events.append(event("content_block_start", {
                "index": index, "content_block": {"type": "text", "text": ""}}))
            events += [event("content_block_delta", {"index": index, "delta": {
                "type": "text_delta", "text": w}}) for w in _words(reply.text)]
            events.append(event("content_block_stop", {"index": index}))
            index += 1
        for call_id, call in zip(self._call_ids(reply), reply.tool_calls, strict=True):
            events.append(event("content_block_start", {"index": index, "content_block": {
                "type": "tool_use", "id": call_id, "name": call.name, "input": {}}}))
            events += [event("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": p}})
                for p in _pieces(call.arguments)]
            events.append(event("content_block_stop", {"index": index}))
            index += 1
        events.append(event("message_delta", {
            "delta": {"stop_reason": self._stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": completion}}))
        events.append(event("message_stop", {}))
        async for item in self._paced(events, reply, client):
            yield item
