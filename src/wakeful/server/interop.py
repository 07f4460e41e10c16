"""The interop service: what the open protocols need for as long as the runtime runs.

Added to a runtime before it starts (``install_interop``), it delivers A2A push
notifications (and the ones a crash left undelivered), connects to the project's MCP
servers and registers their tools, and registers the A2A caller tool. The HTTP side
(``/a2a``, ``/mcp``) is mounted by :func:`wakeful.server.app.create_app`, which finds
this service on the runtime for its settings; without it the defaults apply.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from wakeful.interop.a2a_input import remote_input
from wakeful.interop.a2a_mail import RemoteMail
from wakeful.interop.a2a_remote import (
    RemoteA2AModel,
    check_names,
    model_spec,
    proxy_definition,
)
from wakeful.interop.caller import ask_caller
from wakeful.project.interop import A2AServerConfig, McpServerConfig, RemoteAgentConfig
from wakeful.server.a2a.handler import WakefulRequestHandler
from wakeful.server.a2a.push import PushConfigs
from wakeful.store.a2a import A2AStore, a2a_store

if TYPE_CHECKING:
    from a2a.types import Task

    from wakeful.interop.mcp_client import McpTools
    from wakeful.project.loader import Project
    from wakeful.runtime.runtime import Runtime
    from wakeful.server.mcp_server import McpEndpoint


class InteropService:
    name = "interop"

    def __init__(self, a2a: A2AServerConfig | None = None,
                 mcp_servers: list[McpServerConfig] | None = None,
                 remote_agents: list[RemoteAgentConfig] | None = None,
                 project_dir: str | None = None, *, serve_mcp: bool = True) -> None:
        self.a2a = a2a or A2AServerConfig()
        self.mcp_servers = list(mcp_servers or [])
        self.remote_agents = list(remote_agents or [])
        self.project_dir = project_dir
        self.records: A2AStore | None = None
        self.push: PushConfigs | None = None
        self.mcp: McpTools | None = None
        self.mcp_endpoint: McpEndpoint | None = None
        self.serve_mcp = serve_mcp
        self._handler: WakefulRequestHandler | None = None
        self._remote_mail: RemoteMail | None = None

    async def start(self, runtime: Runtime) -> None:
        if "ask_caller" not in runtime.tools:
            runtime.tools.register(ask_caller)
        if self.remote_agents and "remote_input" not in runtime.tools:
            runtime.tools.register(remote_input)
        for remote in self.remote_agents:
            runtime.models.register(model_spec(remote.name), RemoteA2AModel(remote, runtime))
        self._remote_mail = RemoteMail(runtime, [r.name for r in self.remote_agents])
        await self._remote_mail.start()
        self.records = a2a_store(runtime.store)
        self.push = PushConfigs(self.records)
        self._handler = WakefulRequestHandler(runtime, self.records, self.push)
        await self.push.begin(runtime.events, self._view)
        if self.serve_mcp:
            from wakeful.server.mcp_server import McpEndpoint

            self.mcp_endpoint = McpEndpoint(runtime)
            await self.mcp_endpoint.start()
        if self.mcp_servers:
            from wakeful.interop.mcp_client import McpTools

            self.mcp = McpTools(self.mcp_servers, cwd=self.project_dir)
            await self.mcp.start(runtime)
            self.mcp.expand_grants(runtime)

    async def _view(self, task_id: str) -> Task | None:
        assert self._handler is not None and self.records is not None
        row = await self.records.get(task_id)
        return None if row is None else await self._handler.task_view(row)

    async def stop(self) -> None:
        if self._remote_mail is not None:
            await self._remote_mail.stop()
        if self.mcp_endpoint is not None:
            await self.mcp_endpoint.stop()
        if self.mcp is not None:
            await self.mcp.close()
        if self.push is not None:
            await self.push.close()


def with_remote_agents(project: Project) -> Project:
    """``project`` plus one agent per ``remote_agents:`` entry (build the runtime from
    this, then :func:`install_interop`)."""
    remotes = project.config.remote_agents
    if not remotes:
        return project
    check_names(remotes, set(project.agents))
    agents = {**project.agents, **{r.name: proxy_definition(r) for r in remotes}}
    return dataclasses.replace(project, agents=agents)


def install_interop(runtime: Runtime, project: Project) -> InteropService:
    """Add the interop service for ``project``'s settings (before the runtime starts)."""
    config = project.config
    service = InteropService(config.a2a, config.mcp_servers, config.remote_agents,
                             str(project.root))
    runtime.add_service(service)
    return service


def find_interop(runtime: Runtime) -> InteropService | None:
    return next((s for s in runtime.services if isinstance(s, InteropService)), None)
