"""The OpenAI wire format of the model server: ``POST /v1/chat/completions``, JSON or
SSE chunks.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wakeful.testing.connection import _Client
from wakeful.testing.handling import Handling
from wakeful.testing.script import Reply
from wakeful.testing.wire import _BadRequest, _check_openai, _pieces, _words


class OpenAIChat(Handling):
    """The model server's OpenAI endpoint."""

    # OpenAI ------------------------------------------------------------
    async def _chat(self, request: Request) -> Response:
        begun = await self._begin(request, "authorization")
        if isinstance(begun, Response):
            return begun
        record, body = begun
        try:
            _check_openai(body)
        except _BadRequest as exc:
            record.status = 400
            record.finished = time.monotonic()
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error",
                                           "param": None, "code": None}}, 400)
        reply = self._next(body)
        return await self._respond(
            request, record, reply,
            lambda status, message: {"error": {
                "message": message, "param": None, "code": None,
                "type": "rate_limit_exceeded" if status == 429 else "server_error"}},
            lambda c: self._chat_stream(body, reply, c),
            lambda: self._chat_body(body, reply))

    def _finish_reason(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _chat_body(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for call_id, c in zip(self._call_ids(reply), reply.tool_calls, strict=True)]
        prompt, completion = self._usage(body, reply)
        return {
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": self._finish_reason(reply)}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }

    async def _chat_stream(self, body: dict[str, Any], reply: Reply, client: _Client
                           ) -> AsyncIterator[str]:
        base = {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body["model"]}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return "data: " + json.dumps({**base, "choices": [choice]}) + "\n\n"

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": word}) for word in _words(reply.text or "")]
        for index, (call_id, call) in enumerate(
                zip(self._call_ids(reply), reply.tool_calls, strict=True)):
            chunks.append(chunk({"tool_calls": [{"index": index, "id": call_id,
                                                 "type": "function", "function": {
                                                     "name": call.name, "arguments": ""}}]}))
            chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
                       for p in _pieces(call.arguments)]
        chunks.append(chunk({}, self._finish_reason(reply)))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt, completion = self._usage(body, reply)
            chunks.append("data: " + json.dumps({**base, "choices": [], "usage": {
                "prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}}) + "\n\n")
        chunks.append("data: [DONE]\n\n")
        async for item in self._paced(chunks, reply, client):
            yield item
