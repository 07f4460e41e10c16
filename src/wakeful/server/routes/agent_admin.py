"""Agents made at run time: create, change, remove (admins only), export (anyone who
may read), and who is calling (``/api/whoami``) and who else may (``/api/people``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import PlainTextResponse

from wakeful.core.people import Caller
from wakeful.core.stored_agents import Removal
from wakeful.server import views
from wakeful.server.identity import CallerDep, require_role
from wakeful.server.paging import After, after_key
from wakeful.server.responses import AgentRemoved, AgentWithDefinition, PeoplePage, WhoAmI
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.store.people import people_store

router = APIRouter(prefix="/api", tags=["agents"])
Admin = Depends(require_role("admin"))
RunningQuery = Annotated[Removal, Query(description="its running tasks: finish, or cancel")]
AgentFields = Body(description="the fields of an agent file (name, role, instructions, "
                   "model, tools, ...)", examples=[{"name": "helper", "tools": ["note"]}])


@router.post("/agents", status_code=201, response_model=AgentWithDefinition,
             summary="Create an agent now (stored: it "
             "survives a restart and every worker runs it)")
async def create_agent(runtime: RuntimeDep, caller: Caller = Admin,
                       fields: dict[str, Any] = AgentFields) -> dict[str, Any]:
    definition = await runtime.admin.create_agent(fields, by=caller.identity)
    return {**views.agent_summary(runtime, runtime.agent(definition.name)),
            "definition": views.agent_definition(runtime, runtime.agent(definition.name))}


@router.put("/agents/{name}", response_model=AgentWithDefinition,
            summary="Change an agent made at run time (every field, "
            "as in its file); its loop restarts with the new definition")
async def update_agent(name: str, runtime: RuntimeDep, caller: Caller = Admin,
                       fields: dict[str, Any] = AgentFields) -> dict[str, Any]:
    await runtime.admin.update_agent(name, fields, by=caller.identity)
    return {**views.agent_summary(runtime, runtime.agent(name)),
            "definition": views.agent_definition(runtime, runtime.agent(name))}


@router.delete("/agents/{name}", response_model=AgentRemoved,
               summary="Remove an agent made at run time")
async def remove_agent(name: str, runtime: RuntimeDep, caller: Caller = Admin,
                       running: RunningQuery = "finish") -> dict[str, Any]:
    cancelled = await runtime.admin.remove_agent(name, running=running, by=caller.identity)
    return {"removed": name, "running": running, "cancelled": cancelled}


@router.get("/agents/{name}/export", summary="The agent as an agent file (YAML)",
            response_class=PlainTextResponse)
async def export_agent(name: str, runtime: RuntimeDep) -> PlainTextResponse:
    return PlainTextResponse(runtime.admin.export_agent(name),
                             media_type="application/yaml")


@router.get("/whoami", response_model=WhoAmI, summary="Who this token belongs to, and their role")
async def whoami(caller: CallerDep) -> dict[str, Any]:
    return {"identity": caller.identity, "name": caller.name, "role": caller.role,
            "project_token": caller.project_token}


@router.get("/people", response_model=PeoplePage, summary="People with their own tokens "
            "(admins only); page with `after` (a name) and `next`")
async def list_people(runtime: RuntimeDep, caller: Caller = Admin, limit: Limit = 1000,
                      after: After = None) -> dict[str, Any]:
    people = await people_store(runtime.store).list()
    page, more = after_key(people, lambda p: p.name, after, limit, what="person")
    return {"people": [{"name": p.name, "address": p.address, "role": p.role,
                        "created_at": p.created_at, "created_by": p.created_by}
                       for p in page], "next": more}
