"""The team as an MCP server: what a desktop assistant or an IDE can do with it.

Tools: list the agents and their state, start a task (and wait for its result, or
poll it), read a task and its events, list tasks, send mail as a person and read a
person's conversation with an agent, post to a channel. Served over streamable HTTP at
``/mcp`` (behind the project's token) by the app, and over stdio by ``wakeful mcp``.
Everything goes through the runtime's public methods, as the HTTP API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from wakeful import __version__
from wakeful.core.scope import TaskScope
from wakeful.core.states import TaskState
from wakeful.errors import WakefulError
from wakeful.runtime.runtime import Runtime
from wakeful.server import views
from wakeful.server.auth import bearer, token_matches
from wakeful.server.schemas import error_body

MAX_WAIT_S = 600.0
DEFAULT_PERSON = "person:mcp"


def build_server(runtime: Runtime) -> MCPServer:
    server: MCPServer = MCPServer(
        name="wakeful", version=__version__, log_level="WARNING",
        instructions="A Wakeful team of agents: start tasks on agents, wait for results, "
                     "send mail, read conversations and channels.")

    def tool(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """Register ``fn``; a refusal (unknown agent, bad address) reaches the client as
        a tool error with its message, not as a bare 'error executing tool'."""
        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (WakefulError, ValueError) as exc:
                raise ToolError(str(exc)) from None

        server.tool()(guarded)
        return fn

    def task_view(record: Any) -> dict[str, Any]:
        return dict(views.task_view(record, runtime))

    @tool
    async def list_agents() -> list[dict[str, Any]]:
        """Every agent with its state, role and how many tasks it runs and has queued."""
        roles = {d.name: d.role for d in runtime.definitions()}
        return [{"name": s.name, "state": s.state.value, "role": roles.get(s.name, ""),
                 "running": s.running, "queued": s.queued} for s in runtime.statuses()]

    @tool
    async def start_task(agent: str, instruction: str, wait_s: float = 0) -> dict[str, Any]:
        """Start a task on an agent. With wait_s > 0, wait up to that many seconds for
        it to finish; otherwise return at once (poll it with get_task)."""
        record = await runtime.create_task(agent, instruction, created_by="mcp")
        return await _wait(record.id, wait_s)

    async def _wait(task_id: str, wait_s: float) -> dict[str, Any]:
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await runtime.wait_task(task_id, min(wait_s, MAX_WAIT_S))
        return task_view(await runtime.get_task(task_id))

    @tool
    async def get_task(task_id: str, wait_s: float = 0) -> dict[str, Any]:
        """One task: its state, result or error; wait up to wait_s seconds for it to end."""
        return await _wait(task_id, wait_s)

    @tool
    async def list_tasks(agent: str | None = None, state: str | None = None,
                         limit: int = 50) -> list[dict[str, Any]]:
        """Tasks, newest last, optionally of one agent and in one state."""
        states = [TaskState(state)] if state else None
        records = await runtime.store.list_tasks(agent=agent, states=states)
        return [task_view(r) for r in records[-max(1, min(limit, 500)):]]

    @tool
    async def task_events(task_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """What a task did, in order (its latest events)."""
        await runtime.get_task(task_id)
        await runtime.store.flush()
        events = await runtime.store.query_events(task_id=task_id, limit=min(limit, 1000),
                                                  newest=True)
        return [dict(views.event_view(e)) for e in events]

    @tool
    async def send_mail(to: str, body: str, subject: str = "",
                        sender: str = DEFAULT_PERSON) -> dict[str, Any]:
        """Send mail as a person ('person:NAME') to an agent, a task or a channel."""
        sent = await runtime.mailbox.send(sender, to, subject, body)
        return {"id": sent.id, "delivered_to": sent.delivered_to}

    @tool
    async def read_conversation(agent: str, person: str = DEFAULT_PERSON,
                                limit: int = 50) -> list[dict[str, Any]]:
        """A person's 1-1 mail with an agent, oldest first."""
        runtime.agent(agent)
        mails = await runtime.mailbox.conversation(person, agent, limit=min(limit, 500))
        return [{"id": m.id, "from": m.sender, "to": m.recipient, "subject": m.subject,
                 "body": m.body, "at": m.created_at} for m in mails]

    @tool
    async def post_to_channel(channel: str, body: str, sender: str = DEFAULT_PERSON
                              ) -> dict[str, Any]:
        """Post to a channel ('#team' or 'team') as a person who is a member."""
        sent = await runtime.mailbox.post(sender, channel.removeprefix("#"), body)
        return {"id": sent.id, "delivered_to": sent.delivered_to}

    return server


class McpEndpoint:
    """``/mcp``: the streamable HTTP transport, behind the token, with an owner for the
    SDK's session manager (which must run in one task for its whole life)."""

    def __init__(self, runtime: Runtime) -> None:
        self.server = build_server(runtime)
        self.server.streamable_http_app(
            streamable_http_path="/mcp", json_response=True,
            transport_security=TransportSecuritySettings(
                enable_dns_rebinding_protection=False))  # the token guards it
        self.manager: StreamableHTTPSessionManager = self.server.session_manager
        self.token: str | None = None
        self._scope = TaskScope("mcp-server")
        self._stop = asyncio.Event()
        self._running = asyncio.Event()

    async def start(self) -> None:
        self._scope.spawn(self._run(), name="mcp-server:sessions")
        await self._running.wait()

    async def _run(self) -> None:
        async with self.manager.run():
            self._running.set()
            await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        await self._scope.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", ())}
        if self.token is not None and not token_matches(
                self.token, bearer(headers.get("authorization"))):
            response = JSONResponse(error_body("missing or wrong token: send "
                                               "'Authorization: Bearer TOKEN'", 401),
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if not self._running.is_set():
            response = JSONResponse(error_body("the MCP server is not running", 503),
                                    status_code=503)
            await response(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)
