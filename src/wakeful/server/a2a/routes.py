"""Mounting the A2A server into the app: one set of routes serves every agent.

``/a2a`` lists the cards; ``/a2a/{agent}/.well-known/agent-card.json`` is one agent's
card; ``POST /a2a/{agent}`` is its JSON-RPC endpoint and ``/a2a/{agent}/message:send``,
``/a2a/{agent}/tasks/...`` its HTTP+JSON endpoints (the SDK's dispatchers, so the wire
format is the SDK's). Each call names the agent in its path; an agent that is not
exposed is a 404, and a call without the project's token a 401 (cards are public, as
the spec wants: they say how to authenticate).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wakeful.project.interop import A2AServerConfig
from wakeful.runtime.runtime import Runtime
from wakeful.server.a2a.cards import agent_card
from wakeful.server.a2a.handler import WakefulRequestHandler
from wakeful.server.a2a.push import PushConfigs
from wakeful.server.auth import bearer, token_matches
from wakeful.server.schemas import error_body
from wakeful.store.a2a import A2AStore, a2a_store

PREFIX = "/a2a"
Endpoint = Callable[[Request], Awaitable[Response]]


class _AgentContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's context, plus the agent named in the path."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state["agent"] = request.path_params["agent"]
        return context


class A2AServer:
    """The pieces behind ``/a2a``: which agents are exposed, the handler, the guard."""

    def __init__(self, runtime: Runtime, token: str, config: A2AServerConfig,
                 records: A2AStore | None = None, push: PushConfigs | None = None) -> None:
        self.runtime = runtime
        self.token = token
        self.config = config
        self.records = records or a2a_store(runtime.store)
        self.push = push or PushConfigs(self.records)
        self.handler = WakefulRequestHandler(runtime, self.records, self.push)

    def exposed(self) -> list[str]:
        names = sorted(self.runtime.agent_names())
        if self.config.expose is None:
            return names
        return [n for n in names if n in self.config.expose]

    def _refusal(self, request: Request, agent: str) -> Response | None:
        if agent not in self.exposed():
            return JSONResponse(error_body(f"no A2A agent {agent!r} here (A2A agents: "
                                           f"{', '.join(self.exposed()) or 'none'})", 404),
                                status_code=404)
        if self.config.auth == "bearer" and not token_matches(
                self.token, bearer(request.headers.get("authorization"))):
            return JSONResponse(error_body("missing or wrong token: send 'Authorization: "
                                           "Bearer TOKEN' (the agent card declares it)", 401),
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return None

    def guard(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            refusal = self._refusal(request, request.path_params.get("agent", ""))
            return refusal if refusal is not None else await endpoint(request)

        return guarded

    def card_dict(self, request: Request, agent: str) -> dict[str, object]:
        definition = next(d for d in self.runtime.definitions() if d.name == agent)
        base = str(request.base_url).rstrip("/")
        card = agent_card(definition, f"{base}{PREFIX}/{agent}",
                          push=self.push.delivering, bearer=self.config.auth == "bearer")
        return agent_card_to_dict(card)

    async def card(self, request: Request) -> Response:
        agent = request.path_params["agent"]
        if agent not in self.exposed():
            return JSONResponse(error_body(f"no A2A agent {agent!r} here", 404),
                                status_code=404)
        return JSONResponse(self.card_dict(request, agent))

    async def cards(self, request: Request) -> Response:
        return JSONResponse({"agents": [self.card_dict(request, a) for a in self.exposed()]})

    def routes(self) -> list[BaseRoute]:
        builder = _AgentContextBuilder()
        made: list[BaseRoute] = [
            Route(PREFIX, self.cards, methods=["GET"]),
            Route(f"{PREFIX}/{{agent}}{AGENT_CARD_WELL_KNOWN_PATH}", self.card,
                  methods=["GET"]),
        ]
        sdk = [*create_jsonrpc_routes(self.handler, f"{PREFIX}/{{agent}}",
                                      context_builder=builder, enable_v0_3_compat=True),
               *create_rest_routes(self.handler, context_builder=builder,
                                   path_prefix=f"{PREFIX}/{{agent}}")]
        rpc_path = f"{PREFIX}/{{agent}}"
        for route in sdk:
            # The SDK also mounts '/{tenant}' at the root, which would shadow the whole
            # app; Wakeful has no tenants, so only the plain routes are kept.
            if isinstance(route, Route):
                endpoint = route.endpoint
                if route.path == rpc_path:
                    endpoint = _versioned_methods(endpoint)
                made.append(Route(route.path, self.guard(endpoint),
                                  methods=sorted(route.methods or ())))
        return made


def _versioned_methods(endpoint: Endpoint) -> Endpoint:
    """JSON-RPC method names by the requested version (spec 3.6.2: a request is served
    with the semantics of its ``A2A-Version``). The SDK hands 0.3 names
    (``message/send``) to its 0.3 adapter whatever the header says; under 1.x they are
    unknown methods (-32601), as 1.0 names them ``SendMessage`` etc."""

    async def checked(request: Request) -> Response:
        version = (request.headers.get("a2a-version")
                   or request.query_params.get("A2A-Version") or "").strip()
        if version and not version.startswith("0."):
            try:
                body = json.loads(await request.body())
            except ValueError:
                body = None  # the SDK answers with its parse error
            method = body.get("method") if isinstance(body, dict) else None
            if isinstance(method, str) and "/" in method:
                request_id = body.get("id") if isinstance(body, dict) else None
                return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": {
                    "code": -32601, "message": f"method {method!r} is an A2A 0.3 name; "
                    f"under A2A-Version {version} use the 1.0 names (SendMessage, GetTask, "
                    "...), or send A2A-Version: 0.3"}})
        return await endpoint(request)

    return checked


def mount_a2a(app: FastAPI, server: A2AServer) -> None:
    app.router.routes.extend(server.routes())
