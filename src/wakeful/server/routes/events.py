"""The event log, filtered, and the runtime's overall status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.server import views
from wakeful.server.routes.deps import Limit, RuntimeDep

router = APIRouter(prefix="/api", tags=["events"])


@router.get("/events", summary="Recorded events, in order")
async def events(runtime: RuntimeDep, agent: str | None = None, task_id: str | None = None,
                 type_prefix: str | None = Query(None, description="e.g. 'mail.' or 'task.'"),
                 trace: str | None = Query(None, description="a trace (root task) id"),
                 after_id: int = Query(0, ge=0), limit: Limit = 200,
                 newest: bool = Query(False, description="the last `limit` events")
                 ) -> dict[str, Any]:
    if agent is not None:
        runtime.agent(agent)
    await runtime.store.flush()
    found = await runtime.store.query_events(agent=agent, task_id=task_id,
                                             type_prefix=type_prefix, correlation_id=trace,
                                             after_id=after_id, limit=limit, newest=newest)
    more = len(found) == limit and not newest
    return {"events": [views.event_view(e) for e in found],
            "next": found[-1].id if more else None}  # pass it as after_id for the next page


@router.get("/status", summary="The run: id, whether idle, usage so far, counts")
async def status(runtime: RuntimeDep) -> dict[str, Any]:
    states: dict[str, int] = {}
    for runner in runtime.agents.values():
        states[runner.state.value] = states.get(runner.state.value, 0) + 1
    return {"run_id": runtime.run_id, "idle": runtime.idle(), "agents": len(runtime.agents),
            "agent_states": states, "channels": len(runtime.mailbox.channels()),
            "usage": runtime.usage.as_dict()}
