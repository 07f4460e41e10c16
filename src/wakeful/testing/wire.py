"""The model server's view of the wire formats: the checks OpenAI makes on a request,
token estimates, and how text is cut into stream chunks.
"""

from __future__ import annotations

import json
import re
from typing import Any


class _BadRequest(Exception):
    pass


def _estimate(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += len(json.dumps(content))
    total += len(str(body.get("system") or ""))
    return max(1, total // 4)


def _check_openai(body: dict[str, Any]) -> None:
    """The checks OpenAI makes that a client is most likely to get wrong."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _BadRequest("'model' is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty array")
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise _BadRequest(f"messages[{index}]: invalid role {role!r}")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                raise _BadRequest(f"messages[{index}]: tool message answers {call_id!r}, which "
                                  "is not a tool call of the preceding assistant message")
            continue
        open_calls = set()
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if message.get("content") is None and not calls:
                raise _BadRequest(f"messages[{index}]: an assistant message needs 'content' "
                                  "or 'tool_calls'")
            open_calls = {c["id"] for c in calls}
        elif not isinstance(message.get("content"), str | list):
            raise _BadRequest(f"messages[{index}]: 'content' is required for role {role!r}")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not tools):
        raise _BadRequest("'tools' must be a non-empty array when given")


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]
