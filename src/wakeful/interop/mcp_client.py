"""Tools from MCP servers: each server's tools become Wakeful tools named ``SERVER.TOOL``.

Each configured server (``mcp_servers:`` in ``wakeful.yaml``: a stdio command, or a
streamable HTTP URL with its credential in an environment variable) gets one
connection, owned by one asyncio task (the MCP SDK's anyio scopes must be entered and
left in the same task). The connection lists the server's tools and registers them;
their arguments are validated against the server's own JSON Schema before a call is
sent. A server that crashes or stops answering (it is asked for its tools every few
seconds) is reconnected with backoff; while it is down its tools fail at once with a
message that says so, and the task carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httpx2
import mcp_types
import structlog
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel, ConfigDict, model_validator

from wakeful.core.resources import Access
from wakeful.core.scope import TaskScope
from wakeful.errors import WakefulError
from wakeful.models.base import Message
from wakeful.project.interop import McpServerConfig
from wakeful.toolkit.registry import Tool

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime
    from wakeful.toolkit.context import ToolContext

log = structlog.get_logger("wakeful.mcp")

PING_INTERVAL_S = 5.0
BACKOFF_S = (0.2, 1.0, 2.0, 5.0, 10.0, 30.0)
MAX_RESULT_CHARS = 100_000


class McpUnavailable(WakefulError):
    """The MCP server of a tool is down (being restarted) or never came up."""


class JsonSchemaArgs(BaseModel):
    """Arguments checked against a JSON Schema the MCP server gave (not pydantic's)."""

    model_config = ConfigDict(extra="allow")
    validator: ClassVar[Draft202012Validator]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        errors = sorted(cls.validator.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            raise ValueError("; ".join(
                f"{'.'.join(str(p) for p in e.path) or '(arguments)'}: {e.message}"
                for e in errors[:5]))
        return data


def args_model(name: str, schema: dict[str, Any]) -> type[JsonSchemaArgs]:
    try:
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema)
    except SchemaError as exc:
        log.warning("MCP tool has an invalid input schema; arguments are not checked",
                    tool=name, error=exc.message)
        validator = Draft202012Validator({"type": "object"})
    model: type[JsonSchemaArgs] = type(f"{name}_arguments", (JsonSchemaArgs,),
                                       {"validator": validator, "__module__": __name__})
    return model


def result_text(result: mcp_types.CallToolResult) -> str:
    """What the model sees: text as is, structured content as JSON, images and other
    binary content as references (never the bytes)."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            kind = "image" if isinstance(block, mcp_types.ImageContent) else "audio"
            parts.append(f"[{kind}: {block.mime_type}, {len(block.data) * 3 // 4} bytes, "
                         "not shown]")
        else:
            parts.append(json.dumps(block.model_dump(mode="json", exclude_none=True))[:2000])
    if result.structured_content is not None and not parts:
        parts.append(json.dumps(result.structured_content, default=str))
    text = "\n".join(parts) or "(no content)"
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "...[cut]"


@dataclass(frozen=True)
class McpTool(Tool):
    """A tool of an MCP server; ``run`` forwards the call over the server's connection."""

    connection: McpConnection | None = None
    remote_name: str = ""

    async def run(self, ctx: ToolContext, args: BaseModel) -> Any:
        assert self.connection is not None
        arguments = dict(args.model_extra or {})
        ctx.emit("mcp.call", server=self.connection.config.name, tool=self.remote_name)
        self.connection.callers.append(ctx.agent)
        try:
            return await self.connection.call(self.remote_name, arguments)
        finally:
            self.connection.callers.remove(ctx.agent)


class McpConnection:
    """One MCP server: connect, list tools, keep it alive, call it."""

    def __init__(self, config: McpServerConfig, cwd: str | None = None,
                 probe_interval_s: float = PING_INTERVAL_S) -> None:
        self.config = config
        self.cwd = cwd
        self.probe_interval_s = probe_interval_s
        self.client: Client | None = None
        self.tools: list[mcp_types.Tool] = []
        self.last_error: str | None = None
        self.connects = 0
        self.ready = asyncio.Event()  # set while connected
        self.lost = asyncio.Event()  # set while not connected
        self.tried = asyncio.Event()  # set after the first attempt, good or bad
        self._stop = asyncio.Event()
        self.runtime: Runtime | None = None
        self.callers: list[str] = []  # agents with a call in flight (sampling uses them)
        self.on_tools: Callable[[McpConnection], None] | None = None  # after each listing
        self._relist = asyncio.Event()  # the server said its tools changed

    async def _notified(self, message: Any) -> None:
        """Server notifications: ``tools/list_changed`` has the tools listed again (by
        the connection's own task: the session must not be called from its reader)."""
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._relist.set()

    def _listed(self, tools: list[mcp_types.Tool]) -> None:
        self.tools = tools
        if self.on_tools is not None:
            self.on_tools(self)

    async def _sample(self, context: Any, params: mcp_types.CreateMessageRequestParams
                      ) -> mcp_types.CreateMessageResult | mcp_types.ErrorData:
        """A sampling request from the server: answered by the model of the agent whose
        call is in flight (the latest one), or the project's default model."""
        runtime = self.runtime
        if runtime is None:
            return mcp_types.ErrorData(code=-32600, message="sampling is not available")
        agent = self.callers[-1] if self.callers else None
        model = runtime.agent(agent).model if agent else runtime.models.get(
            runtime.default_model)
        messages = [Message(role="system", content=params.system_prompt)] \
            if params.system_prompt else []
        for item in params.messages:
            blocks = item.content if isinstance(item.content, list) else [item.content]
            text = "\n".join(b.text for b in blocks if isinstance(b, mcp_types.TextContent))
            messages.append(Message(role=item.role, content=text))
        try:
            response = await model.complete(messages, [])
        except Exception as exc:
            return mcp_types.ErrorData(code=-32603, message=f"the model failed: {exc}")
        runtime.events.emit("mcp.sampling", agent=agent, data={
            "server": self.config.name, "model": model.name})
        return mcp_types.CreateMessageResult(
            role="assistant", model=model.name, stop_reason="endTurn",
            content=mcp_types.TextContent(type="text", text=response.message.content or ""))

    def _target(self) -> tuple[Any, httpx2.AsyncClient | None]:
        config = self.config
        if config.command is not None:
            env = {**os.environ, **config.env}
            return StdioServerParameters(command=config.command, args=config.args, env=env,
                                         cwd=config.cwd or self.cwd), None
        assert config.url is not None
        headers = {}
        if config.token_env:
            token = os.environ.get(config.token_env)
            if not token:
                raise McpUnavailable(f"MCP server {config.name!r}: the environment variable "
                                     f"{config.token_env} (its credential) is not set")
            headers["Authorization"] = f"Bearer {token}"
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(
            config.timeout_s, read=max(config.timeout_s, 300.0)))
        return streamable_http_client(config.url, http_client=http), http

    async def run(self) -> None:
        """Connect, and reconnect with backoff, until closed."""
        failures = 0
        while not self._stop.is_set():
            http: httpx2.AsyncClient | None = None
            try:
                target, http = self._target()
                async with Client(target, read_timeout_seconds=self.config.timeout_s,
                                  mode="legacy", sampling_callback=self._sample,
                                  message_handler=self._notified) as client:
                    self._relist.clear()
                    listed = await client.list_tools()
                    self.client = client
                    self.connects += 1
                    failures = 0
                    self.last_error = None
                    self.lost.clear()
                    self._listed(list(listed.tools))
                    self.ready.set()
                    self.tried.set()
                    log.info("MCP server connected", server=self.config.name,
                             tools=len(self.tools))
                    await self._keep_alive(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("MCP server unavailable", server=self.config.name,
                            error=self.last_error)
            finally:
                self.client = None
                self.ready.clear()
                self.lost.set()
                self.tried.set()
                if http is not None:
                    await http.aclose()
            if self._stop.is_set():
                return
            delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            failures += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: it can eat a cancel
                    await self._stop.wait()

    async def _keep_alive(self, client: Client) -> None:
        """List the tools every probe interval (liveness, and tools added without a
        notification) and whenever the server says they changed."""
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                relist = asyncio.ensure_future(self._relist.wait())
                try:
                    await asyncio.wait({stop, relist}, timeout=self.probe_interval_s,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    relist.cancel()
                if self._stop.is_set():
                    return
                self._relist.clear()
                # A listing, not a ping: ping is gone from the 2026-07-28 protocol.
                async with asyncio.timeout(self.config.timeout_s):
                    listed = await client.list_tools(cache_mode="bypass")
                self._listed(list(listed.tools))
        finally:
            stop.cancel()

    def close(self) -> None:
        self._stop.set()

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        client = self.client
        if client is None:
            why = f" (last error: {self.last_error})" if self.last_error else ""
            raise McpUnavailable(f"MCP server {self.config.name!r} is not connected; it is "
                                 f"being restarted{why}. Try again later.")
        try:
            result = await client.call_tool(name, arguments,
                                            read_timeout_seconds=self.config.timeout_s)
        except Exception as exc:
            raise McpUnavailable(f"MCP server {self.config.name!r}: call to {name!r} failed: "
                                 f"{type(exc).__name__}: {exc}") from None
        text = result_text(result)
        if result.is_error:
            raise WakefulError(f"MCP server {self.config.name!r} says: {text}")
        return text


def _resources_for(config: McpServerConfig, tool: str) -> Any:
    for pattern, resource in config.resources.items():
        if fnmatch.fnmatchcase(tool, pattern):
            return lambda _args, r=resource: [Access.write(r)]
    return None


def make_tools(connection: McpConnection) -> list[McpTool]:
    made = []
    for remote in connection.tools:
        name = f"{connection.config.name}.{remote.name}"
        schema = dict(remote.input_schema or {"type": "object"})
        made.append(McpTool(
            name=name, description=(remote.description or remote.title or name)[:1000],
            args_model=args_model(name, schema), fn=lambda: None, wants_context=True,
            parameters=schema, resources=_resources_for(connection.config, remote.name),
            connection=connection, remote_name=remote.name))
    return made


class McpTools:
    """Every configured MCP server, connected for the runtime's life."""

    def __init__(self, servers: Iterable[McpServerConfig], *, cwd: str | None = None,
                 connect_timeout_s: float = 30.0,
                 probe_interval_s: float = PING_INTERVAL_S) -> None:
        self.connections = [McpConnection(s, cwd, probe_interval_s) for s in servers]
        self.connect_timeout_s = connect_timeout_s
        self._scope = TaskScope("mcp")
        self._registered: set[str] = set()

    async def start(self, runtime: Runtime) -> None:
        """Connect to every server (at once), register the tools of those that came up;
        the others keep retrying, and their tools are registered when they do. Tools a
        server lists later (after a restart, on ``tools/list_changed``, or at a probe)
        are registered then, and granted to the agents whose globs match them."""
        for connection in self.connections:
            connection.runtime = runtime
            connection.on_tools = lambda c: self._register(runtime, c)
            self._scope.spawn(connection.run(), name=f"mcp:{connection.config.name}")
        waits = [c.tried.wait() for c in self.connections]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), self.connect_timeout_s)

    def _register(self, runtime: Runtime, connection: McpConnection) -> None:
        added = []
        for made in make_tools(connection):
            if made.name not in self._registered and made.name not in runtime.tools:
                runtime.tools.register(made)
                self._registered.add(made.name)
                added.append(made.name)
        if added:
            granted = self._grant(runtime, added)
            runtime.events.emit("mcp.tools_added", data={
                "server": connection.config.name, "tools": added, "granted": granted})

    def expand_grants(self, runtime: Runtime) -> None:
        """Turn glob grants (``github.*``) in agent files into the names of the MCP
        tools known now (the tools registered later are granted as they come)."""
        self._grant(runtime, [t for t in runtime.tools.names() if t in self._registered])

    @staticmethod
    def _grant(runtime: Runtime, names: list[str]) -> dict[str, list[str]]:
        """Grant ``names`` to every agent with a glob that matches them: in its
        definition (a frozen model, but its list is ours to fill: agents made or
        restarted later read it) and in its running agent's allowed set, which each
        model call and tool call reads afresh."""
        granted: dict[str, list[str]] = {}
        for definition in runtime.definitions():
            patterns = [g for g in definition.tools if any(c in g for c in "*?[")]
            matched = [n for n in names if n not in definition.tools
                       and any(fnmatch.fnmatchcase(n, p) for p in patterns)]
            if not matched:
                continue
            definition.tools.extend(matched)
            runner = runtime.agents.get(definition.name)
            if runner is not None:
                runner.allowed_tools = runner.allowed_tools | frozenset(matched)
            granted[definition.name] = matched
        return granted

    async def close(self) -> None:
        for connection in self.connections:
            connection.close()
        await self._scope.aclose()
