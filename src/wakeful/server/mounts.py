"""Mounting the open protocols into the app: A2A at ``/a2a``, MCP at ``/mcp`` (when the
runtime has the interop service, which owns the MCP sessions)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.routing import Route

from wakeful.errors import WakefulError
from wakeful.project.interop import A2AServerConfig
from wakeful.runtime.runtime import Runtime
from wakeful.server.a2a import A2AServer, mount_a2a
from wakeful.server.auth import is_loopback
from wakeful.server.interop import find_interop


def mount_interop(app: FastAPI, runtime: Runtime, token: str) -> None:
    service = find_interop(runtime)
    config = service.a2a if service is not None else A2AServerConfig()
    if config.enabled:
        server = A2AServer(runtime, token, config,
                           service.records if service is not None else None,
                           service.push if service is not None else None)
        app.state.a2a = server
        mount_a2a(app, server)
    if service is not None and service.mcp_endpoint is not None:
        service.mcp_endpoint.token = token
        app.router.routes.append(Route("/mcp", service.mcp_endpoint,
                                       methods=["GET", "POST", "DELETE"]))


def check_exposure(runtime: Runtime, host: str) -> None:
    """Public A2A agents (``a2a.auth: none``) are for loopback only, unless the project
    insists (``a2a.allow_public_network: true``)."""
    service = find_interop(runtime)
    if service is None or service.a2a.auth != "none" or service.a2a.allow_public_network:
        return
    if not is_loopback(host):
        raise WakefulError(f"wakeful.yaml: a2a.auth is 'none' (A2A agents anyone can call), "
                           f"which is allowed on a loopback address only, not {host}; set "
                           "a2a.allow_public_network: true if that is really meant")
