"""A deterministic model that plays a script from YAML, tool calls included.

It exists so the example team, the tests and the benchmarks run offline with no API
key. It is stateless with respect to conversations: the step it plays is the number of
assistant messages already in the conversation, so a task resumed after a crash picks
up the script exactly where its stored conversation ends.

Script file (``scripts/NAME.yaml``)::

    latency_ms: 200            # default delay per step (simulates a model call)
    scripts:
      - match: "research"      # regex on the task instruction; first match wins
        steps:
          - say: "Looking into {instruction}"
            tool_calls:
              - {tool: note, args: {text: "started"}}
          - say: "Done: {last_tool_result}"
      - steps:                 # no match: the fallback
          - say: "Done: {instruction}"
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wakeful.core.context import CURRENT_TASK
from wakeful.errors import ConfigError, ModelError
from wakeful.models.base import (
    Completed,
    Message,
    Model,
    ModelResponse,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from wakeful.yamlfile import read_yaml


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    # Sent verbatim instead of ``args``: lets a script produce malformed arguments.
    raw_args: str | None = None


class ScriptedStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    say: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    latency_ms: float | None = Field(default=None, ge=0)
    # Raise a model error instead of answering, ``fail_times`` times per task (0 = always).
    error: str | None = None
    fail_times: int = Field(default=0, ge=0)


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: str | None = None  # a regex the task's instruction must contain
    # ... and one its system prompt must contain: how a script tells a task answering a
    # person (whose instruction is just their words) from any other
    match_system: str | None = None
    steps: list[ScriptedStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _valid_regex(self) -> Script:
        for name in ("match", "match_system"):
            pattern = getattr(self, name)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{name!r} is not a valid regular expression: {exc}"
                                     ) from None
        return self


class ScriptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_ms: float = Field(default=0, ge=0)
    token_delay_ms: float = Field(default=0, ge=0)
    scripts: list[Script] = Field(min_length=1)


DEFAULT_SCRIPT = ScriptFile(scripts=[Script(steps=[ScriptedStep(say="Done: {instruction}")])])


class _Fields(dict[str, str]):
    """Template values; unknown ``{names}`` are left as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _render(template: str, fields: _Fields) -> str:
    """Fill ``{instruction}`` and friends. A script's text may hold braces that are not
    a template (JSON, ``{0}``, a lone ``{``): then only the plain ``{name}`` placeholders
    are filled and the rest is left as written, instead of failing the model call."""
    try:
        return template.format_map(fields)
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return _PLACEHOLDER.sub(lambda m: fields[m.group(1)], template)


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class ScriptedModel(Model):
    def __init__(self, script: ScriptFile = DEFAULT_SCRIPT, name: str = "scripted") -> None:
        self.name = name
        self.script = script
        self.calls = 0
        self._failures: defaultdict[tuple[str, int], int] = defaultdict(int)
        self._fixed: dict[int, str] = {}  # id(call) -> its arguments, when constant

    @classmethod
    def from_file(cls, path: Path, name: str) -> ScriptedModel:
        data = read_yaml(path, f"the script for model {name!r}")
        try:
            return cls(ScriptFile.model_validate(data), name=name)
        except ValidationError as exc:
            from wakeful.core.validation import describe_validation_error

            raise ConfigError(describe_validation_error(str(path), exc)) from None

    @classmethod
    def from_steps(cls, steps: list[dict[str, Any]], *, latency_ms: float = 0,
                   name: str = "scripted") -> ScriptedModel:
        """Build a one-script model in code (tests, benchmarks)."""
        script = ScriptFile.model_validate({"latency_ms": latency_ms,
                                            "scripts": [{"steps": steps}]})
        return cls(script, name=name)

    def _pick(self, messages: list[Message]) -> tuple[Script, str]:
        instruction = next((m.content or "" for m in messages if m.role == "user"), "")
        system = next((m.content or "" for m in messages if m.role == "system"), "")
        for script in self.script.scripts:
            if ((script.match is None or re.search(script.match, instruction))
                    and (script.match_system is None
                         or re.search(script.match_system, system))):
                return script, instruction
        raise ModelError(f"model {self.name!r}: no script matches instruction {instruction!r} "
                         "(add a script without 'match' as a fallback)")

    async def _play(self, messages: list[Message]) -> tuple[ScriptedStep, ModelResponse]:
        self.calls += 1
        script, instruction = self._pick(messages)
        index = prompt_chars = 0  # one pass: replies so far, and the prompt's size
        for m in messages:
            if m.role == "assistant":
                index += 1
            prompt_chars += len(m.content or "")
        # Past the end of its script, a model just finishes.
        step = script.steps[index] if index < len(script.steps) else ScriptedStep(say="Done.")
        latency = step.latency_ms if step.latency_ms is not None else self.script.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        if step.error is not None:
            key = (CURRENT_TASK.get() or instruction, index)
            self._failures[key] += 1
            if step.fail_times == 0 or self._failures[key] <= step.fail_times:
                raise ModelError(f"model {self.name!r}: {step.error}")
        last_tool = next((m.content or "" for m in reversed(messages) if m.role == "tool"), "")
        fields = _Fields(instruction=instruction, last_tool_result=last_tool, step=str(index))
        content = _render(step.say, fields) if step.say is not None else None
        calls = tuple(
            ToolCall(id=f"call_{index}_{n}", name=call.tool,
                     arguments=self._arguments(call, fields))
            for n, call in enumerate(step.tool_calls)
        )
        usage = Usage(
            input_tokens=max(1, prompt_chars // 4),
            output_tokens=_estimate_tokens(content or "") + 8 * len(calls),
        )
        message = Message(role="assistant", content=content, tool_calls=calls)
        finish = "tool_calls" if calls else "stop"
        return step, ModelResponse(message=message, usage=usage, finish_reason=finish,
                                   model=self.name)

    def _arguments(self, call: ScriptedToolCall, fields: _Fields) -> str:
        """A call's arguments as JSON, its templates filled; arguments with no
        template are encoded once (benchmarks play thousands of steps a second)."""
        if call.raw_args is not None:
            return call.raw_args
        fixed = self._fixed.get(id(call))
        if fixed is not None:
            return fixed
        if any(isinstance(v, str) and ("{" in v or "}" in v) for v in call.args.values()):
            return json.dumps({k: _render(v, fields) if isinstance(v, str) else v
                               for k, v in call.args.items()})
        self._fixed[id(call)] = fixed = json.dumps(call.args)
        return fixed

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        return (await self._play(messages))[1]

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[StreamEvent]:
        _, response = await self._play(messages)
        content = response.message.content or ""
        delay = self.script.token_delay_ms / 1000
        for word in re.findall(r"\S+\s*", content):
            if delay:
                await asyncio.sleep(delay)
            yield TextDelta(word)
        for index, call in enumerate(response.message.tool_calls):
            yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.arguments)
        yield Completed(response)
