"""Tool calls for models that have none, through JSON-schema constrained output.

Small instruct models (SmolLM2 and its kind) have no tool calling in their chat
template, but servers such as llama.cpp's constrain decoding to a JSON schema
(``response_format``). So, in ``tool_calls: json_schema`` mode, each request carries a
schema built from the task's granted tools: the reply must be ONE of
``{"tool": NAME, "arguments": {...}}`` (arguments matching that tool's own schema) or
``{"final_answer": "..."}``. The grammar makes a malformed call impossible; choosing
the right tool is still the model's judgement.

The conversation stays stored in the ordinary shape (assistant ``tool_calls``, ``tool``
results); it is translated for each request into plain turns such a model's template
accepts, and the JSON reply is turned back into an ordinary tool call or text, so the
rest of Wakeful cannot tell the difference.
"""

from __future__ import annotations

import json
import math
from typing import Any

from wakeful.ids import new_id
from wakeful.models.base import Message, ModelResponse, ToolCall, ToolSpec

FINAL = "final_answer"
ARGUMENT_CHARS = 1000  # the longest free-text tool argument (max_argument_chars)
# Said after each tool result: a small model otherwise calls tools in a circle.
AFTER_RESULT = ('If that is enough, reply {"final_answer": "..."} with your answer now; '
                "call another tool only if you still need one.")


def _arguments_schema(spec: ToolSpec) -> dict[str, Any]:
    """The tool's parameter schema, as an object schema (what every tool takes)."""
    schema = dict(spec.parameters or {})
    schema.setdefault("type", "object")
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
    return schema


_NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _integer_bounds(schema: dict[str, Any]) -> dict[str, Any] | None:
    """A bounded ``number`` as an ``integer`` within the same bounds, or None when no
    integer fits. llama.cpp's grammar (llguidance) enforces integer bounds but not
    number bounds: ``timeout_s > 0`` came back as 0, a call its tool refused."""
    low = high = None
    if "minimum" in schema:
        low = math.ceil(schema["minimum"])
    if "exclusiveMinimum" in schema:
        low = max(low if low is not None else -math.inf,
                  math.floor(schema["exclusiveMinimum"]) + 1)
    if "maximum" in schema:
        high = math.floor(schema["maximum"])
    if "exclusiveMaximum" in schema:
        high = min(high if high is not None else math.inf,
                   math.ceil(schema["exclusiveMaximum"]) - 1)
    if low is not None and high is not None and low > high:
        return None
    integer = {k: v for k, v in schema.items() if k not in _NUMBER_BOUNDS}
    integer["type"] = "integer"
    if low is not None:
        integer["minimum"] = int(low)
    if high is not None:
        integer["maximum"] = int(high)
    return integer


def _bounded(value: Any, max_chars: int) -> Any:
    """A schema the grammar can hold a small model to.

    Every free-text string gets a ``maxLength``: a model that starts repeating itself
    inside an argument still closes the JSON within the output-token limit, instead of
    being cut off mid-call. A bounded number becomes a bounded integer (see
    :func:`_integer_bounds`).
    """
    if isinstance(value, dict):
        bounded = {key: _bounded(item, max_chars) for key, item in value.items()}
        kind = bounded.get("type")
        if kind == "string" and not {"enum", "const", "format", "pattern"} & bounded.keys():
            bounded["maxLength"] = min(max_chars, bounded.get("maxLength", max_chars))
        elif kind == "number" and any(k in bounded for k in _NUMBER_BOUNDS):
            bounded = _integer_bounds(bounded) or bounded
        return bounded
    if isinstance(value, list):
        return [_bounded(item, max_chars) for item in value]
    return value


def _renamed_refs(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: (renames.get(item, item) if key == "$ref" and isinstance(item, str)
                      else _renamed_refs(item, renames)) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed_refs(item, renames) for item in value]
    return value


def _hoist_definitions(spec: ToolSpec, schema: dict[str, Any],
                       definitions: dict[str, Any]) -> dict[str, Any]:
    """Move the tool schema's ``$defs`` to the root (``$ref`` paths are relative to the
    root, and the tool's schema is now nested), renaming any that clash."""
    local = schema.pop("$defs", None)
    if not isinstance(local, dict):
        return schema
    renames: dict[str, str] = {}
    for name, definition in local.items():
        target = name
        if target in definitions and definitions[target] != definition:
            target = f"{spec.name}__{name}"
        renames[f"#/$defs/{name}"] = f"#/$defs/{target}"
        definitions[target] = definition
    hoisted: dict[str, Any] = _renamed_refs(schema, renames)
    for target in {r.removeprefix("#/$defs/") for r in renames.values()}:
        definitions[target] = _renamed_refs(definitions[target], renames)
    return hoisted


def tool_rounds(messages: list[Message]) -> int:
    """Tool-calling replies since the last message from the user (or the task)."""
    rounds = 0
    for message in reversed(messages):
        if message.role == "user":
            break
        if message.role == "assistant" and message.tool_calls:
            rounds += 1
    return rounds


def reply_schema(tools: list[ToolSpec], argument_chars: int = ARGUMENT_CHARS
                 ) -> dict[str, Any]:
    """One call to one of ``tools`` with valid arguments, or a final answer (only a
    final answer when ``tools`` is empty). Free-text arguments are bounded to
    ``argument_chars`` characters each; the final answer is not."""
    definitions: dict[str, Any] = {}
    choices: list[dict[str, Any]] = [
        {"type": "object",
         "properties": {"tool": {"const": spec.name},
                        "arguments": _bounded(_hoist_definitions(
                            spec, _arguments_schema(spec), definitions), argument_chars)},
         "required": ["tool", "arguments"], "additionalProperties": False}
        for spec in tools]
    choices.append({"type": "object", "properties": {FINAL: {"type": "string"}},
                    "required": [FINAL], "additionalProperties": False})
    schema: dict[str, Any] = {"anyOf": choices}
    if definitions:
        schema["$defs"] = _bounded(definitions, argument_chars)
    return schema


def response_format(tools: list[ToolSpec], messages: list[Message],
                    max_rounds: int | None = None,
                    argument_chars: int = ARGUMENT_CHARS) -> dict[str, Any]:
    """The OpenAI-compatible ``response_format`` field for a request: after
    ``max_rounds`` tool calls in a row, only a final answer is allowed (small models
    otherwise call tools in a circle until the step limit)."""
    offered = tools if max_rounds is None or tool_rounds(messages) < max_rounds else []
    return {"type": "json_schema",
            "json_schema": {"name": "step", "strict": True,
                            "schema": reply_schema(offered, argument_chars)}}


def tools_note(tools: list[ToolSpec]) -> str:
    """What the system prompt says about the tools and the reply format."""
    lines = ["You can use these tools:"]
    for spec in tools:
        properties = _arguments_schema(spec).get("properties") or {}
        names = ", ".join(properties) or "no arguments"
        lines.append(f"- {spec.name}({names}): {spec.description.strip().splitlines()[0]}"
                     if spec.description.strip() else f"- {spec.name}({names})")
    lines.append('Reply with one JSON object: {"tool": "<name>", "arguments": {...}} to use '
                 'a tool, or {"final_answer": "<your answer>"} when you are done.')
    return "\n".join(lines)


def _call_text(call: ToolCall) -> str:
    try:
        arguments: Any = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        arguments = call.arguments
    return json.dumps({"tool": call.name, "arguments": arguments}, ensure_ascii=False)


def plain_messages(messages: list[Message], tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """The conversation as plain system/user/assistant turns, the tools described in
    the system prompt; consecutive turns of one role are merged (some templates insist
    on alternation)."""
    turns: list[dict[str, Any]] = []

    def add(role: str, text: str) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})

    note = tools_note(tools)
    noted = False
    for message in messages:
        if message.role == "system":
            add("system", f"{message.content or ''}\n\n{note}".strip())
            noted = True
        elif message.role == "assistant":
            parts = [message.content] if message.content and not message.tool_calls else []
            parts += [_call_text(call) for call in message.tool_calls]
            add("assistant", "\n".join(parts) or json.dumps({FINAL: ""}))
        elif message.role == "tool":
            add("user", f"{message.name or 'The tool'} returned: {message.content or ''}\n"
                        f"{AFTER_RESULT}")
        else:
            add("user", message.content or "")
    if not noted:
        turns.insert(0, {"role": "system", "content": note})
    return turns


def parse_reply(response: ModelResponse) -> ModelResponse:
    """Turn the model's JSON object into an ordinary tool call or final answer.

    Text that is not such an object (a reply cut off by max_tokens, a server that
    ignored the schema) is kept as the answer text, and ``call_info`` says so.
    """
    raw = response.message.content or ""
    info: dict[str, Any] = {**response.call_info, "tool_call_mode": "json_schema"}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    finish = response.finish_reason
    if isinstance(data, dict) and isinstance(data.get("tool"), str) and data["tool"]:
        arguments = data.get("arguments")
        call = ToolCall(id=new_id("call"), name=data["tool"],
                        arguments=json.dumps(arguments if arguments is not None else {},
                                             ensure_ascii=False))
        message = Message(role="assistant", tool_calls=(call,))
        finish = "tool_calls" if finish == "stop" else finish
    elif isinstance(data, dict) and isinstance(data.get(FINAL), str):
        message = Message(role="assistant", content=data[FINAL])
    else:
        message = Message(role="assistant", content=raw)
        info["unparsed_reply"] = True
    return ModelResponse(message, usage=response.usage, finish_reason=finish,
                         model=response.model, cost=response.cost, call_info=info)
