"""The tool registry: typed Python functions exposed to models.

A tool's JSON schema is derived from its type hints (via pydantic), so the schema the
model sees and the validation its arguments go through can never drift apart. Every
way a tool call can go wrong (unknown name, not granted to the agent, arguments that
are not JSON or do not fit the schema, an exception inside the tool) becomes a
:class:`ToolOutcome` with a message written for the model, never a crash of the task.
"""

from __future__ import annotations

import inspect
import json
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from wakeful.errors import WakefulError
from wakeful.models.base import ToolCall, ToolSpec
from wakeful.text import unstorable

if TYPE_CHECKING:
    from wakeful.core.resources import Access
    from wakeful.toolkit.context import ToolContext

ToolFunction = Callable[..., Any]
AccessFunction = Callable[[Any], "Iterable[Access]"]
"""Validated arguments -> the resources a call touches (for auto-pause)."""
ErrorKind = Literal["unknown", "forbidden", "invalid_json", "invalid_args", "too_large",
                    "error", "denied"]
MAX_ARGUMENT_CHARS = 2_000_000
"""The default bound on one call's arguments (JSON text): room for the largest file a
file tool writes, escaped; more is refused before it is parsed, as oversized mail is."""

@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What came of one tool call. ``content`` is what the model is shown."""

    ok: bool
    content: str
    error_kind: ErrorKind | None = None
    traceback: str | None = None

@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args_model: type[BaseModel]
    fn: ToolFunction
    wants_context: bool
    parameters: dict[str, Any] = field(default_factory=dict)
    # Which resources a call touches, and how: the runtime then auto-pauses the call
    # while someone else uses them (see wakeful.resources).
    resources: AccessFunction | None = None

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    async def run(self, ctx: ToolContext, args: BaseModel) -> Any:
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        result = self.fn(ctx, **kwargs) if self.wants_context else self.fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

def _context_param(fn: ToolFunction, hints: dict[str, Any]) -> str | None:
    from wakeful.toolkit.context import ToolContext

    params = list(inspect.signature(fn).parameters.values())
    if params and (params[0].name == "ctx" or hints.get(params[0].name) is ToolContext):
        return params[0].name
    return None

def make_tool(fn: ToolFunction, name: str | None = None, description: str | None = None,
              resources: AccessFunction | None = None) -> Tool:
    """Build a :class:`Tool` from a function's signature, type hints and docstring."""
    tool_name = name or fn.__name__
    hints = get_type_hints(fn, include_extras=True)
    ctx_name = _context_param(fn, hints)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.name == ctx_name:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name!r}: *args/**kwargs cannot be described to a model")
        if param.name not in hints:
            raise TypeError(f"tool {tool_name!r}: parameter {param.name!r} needs a type hint")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], default)
    args_model = create_model(
        f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    schema = args_model.model_json_schema()
    schema.pop("title", None)
    doc = inspect.getdoc(fn) or ""
    return Tool(
        name=tool_name,
        description=description or doc.split("\n\n")[0].replace("\n", " ") or tool_name,
        args_model=args_model,
        fn=fn,
        wants_context=ctx_name is not None,
        parameters=schema,
        resources=resources,
    )

@overload
def tool(fn: ToolFunction, /) -> Tool: ...
@overload
def tool(*, name: str | None = None, description: str | None = None,
         resources: AccessFunction | None = None) -> Callable[[ToolFunction], Tool]: ...
def tool(
    fn: ToolFunction | None = None, /, *, name: str | None = None,
    description: str | None = None, resources: AccessFunction | None = None,
) -> Tool | Callable[[ToolFunction], Tool]:
    """Decorator: ``@tool`` or ``@tool(name=..., description=..., resources=...)``.

    ``resources`` maps the call's validated arguments to the resources it touches,
    e.g. ``resources=lambda a: [Access.write(f"custom:{a.printer}")]``; the call then
    waits its turn (auto-pause) while another task uses them in a conflicting way.
    """
    if fn is not None:
        return make_tool(fn)
    return lambda f: make_tool(f, name=name, description=description, resources=resources)

def _describe_args_error(tool_name: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(arguments)"
        problems.append(f"{loc}: {item['msg']}")
    return f"arguments for tool {tool_name!r} do not match its schema: " + "; ".join(problems)

class ToolRegistry:
    """All tools the runtime knows; each agent may use only those it was granted."""

    # Do calls wait for a person's approval where the agent's rules ask (see
    # wakeful.approvals)? A replay's registry says no: its recording holds the results.
    approvals_apply = True

    def __init__(self, tools: Iterable[Tool] = (), *,
                 max_argument_chars: int = MAX_ARGUMENT_CHARS) -> None:
        self._tools: dict[str, Tool] = {}
        self.max_argument_chars = max_argument_chars
        for item in tools:
            self.register(item)

    def register(self, item: Tool | ToolFunction) -> Tool:
        made = item if isinstance(item, Tool) else make_tool(item)
        if made.name in self._tools:
            raise ValueError(f"a tool named {made.name!r} is already registered")
        self._tools[made.name] = made
        return made

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def specs(self, allowed: Iterable[str]) -> list[ToolSpec]:
        return [self._tools[n].spec for n in allowed if n in self._tools]

    async def call(self, ctx: ToolContext, allowed: frozenset[str], call: ToolCall) -> ToolOutcome:
        """Check and run one tool call; every failure is an outcome, not an exception.

        Cancellation is the exception: it propagates, so cancelling a task stops its tool.
        """
        found = self._tools.get(call.name)
        if found is None:
            granted = ", ".join(sorted(allowed)) or "none"
            return ToolOutcome(False, f"error: unknown tool {call.name!r}; "
                               f"tools you may call: {granted}", "unknown")
        if call.name not in allowed:
            return ToolOutcome(False, f"error: tool {call.name!r} is not granted to agent "
                               f"{ctx.agent!r}; this call was refused and recorded", "forbidden")
        raw, refused = self._parse(call)
        if refused is not None:
            return refused
        bad = unstorable(raw)
        if bad is not None:
            return ToolOutcome(False, f"error: arguments for tool {call.name!r}: {bad}",
                               "invalid_args")
        try:
            args = found.args_model.model_validate(raw)
        except ValidationError as exc:
            return ToolOutcome(False, "error: " + _describe_args_error(call.name, exc),
                               "invalid_args")
        try:
            if found.resources is None:
                result = await found.run(ctx, args)
            else:
                accesses = list(found.resources(args))
                async with ctx.resources.guard(ctx, accesses):
                    result = await found.run(ctx, args)
        except WakefulError as exc:  # refused on purpose: the message says why
            return ToolOutcome(False, f"error: tool {call.name!r}: {exc}", "error")
        except Exception as exc:
            return ToolOutcome(False, f"error: tool {call.name!r} failed: "
                               f"{type(exc).__name__}: {exc}", "error",
                               traceback=traceback.format_exc())
        return ToolOutcome(True, result if isinstance(result, str) else json.dumps(
            result, default=str))

    def _parse(self, call: ToolCall) -> tuple[dict[str, Any], ToolOutcome | None]:
        """The call's arguments as a JSON object, or the outcome that refuses them."""
        size = len(call.arguments)
        if size > self.max_argument_chars:
            return {}, ToolOutcome(
                False, f"error: arguments for tool {call.name!r} are {size:,} characters; "
                f"the limit is {self.max_argument_chars:,}: split the work into smaller "
                "calls", "too_large")
        try:
            raw = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return {}, ToolOutcome(
                False, f"error: arguments for tool {call.name!r} are not valid JSON "
                f"({exc.msg} at line {exc.lineno} column {exc.colno}); send a JSON object "
                "matching the tool's schema", "invalid_json")
        except RecursionError:
            return {}, ToolOutcome(
                False, f"error: arguments for tool {call.name!r} are nested too deeply to "
                "read; send a flatter JSON object", "invalid_json")
        if not isinstance(raw, dict):
            return {}, ToolOutcome(
                False, f"error: arguments for tool {call.name!r} must be a JSON object, got "
                f"{type(raw).__name__}", "invalid_args")
        return raw, None
