"""The event log, filtered, and the runtime's overall status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.server import views
from wakeful.server.paging import SeqAfter
from wakeful.server.responses import EventsPage, RunStatus
from wakeful.server.routes.deps import Limit, RuntimeDep

router = APIRouter(prefix="/api", tags=["events"])


@router.get("/events", response_model=EventsPage,
            summary="Recorded events, in order; page with `after` (an event id) and `next`")
async def events(runtime: RuntimeDep, agent: str | None = None, task_id: str | None = None,
                 type_prefix: str | None = Query(None, description="e.g. 'mail.' or 'task.'"),
                 trace: str | None = Query(None, description="a trace (root task) id"),
                 after_id: int = Query(0, ge=0, description="as `after`"),
                 after: SeqAfter = None, limit: Limit = 200,
                 newest: bool = Query(False, description="the last `limit` events")
                 ) -> dict[str, Any]:
    if agent is not None:
        runtime.agent(agent)
    await runtime.store.flush()
    start = after if after is not None else after_id
    found = await runtime.store.query_events(agent=agent, task_id=task_id,
                                             type_prefix=type_prefix, correlation_id=trace,
                                             after_id=start, limit=limit + 1, newest=newest)
    if newest:
        found, more = found[-limit:], None  # the newest: nothing follows them
    else:
        found, more = found[:limit], len(found) > limit
    return {"events": [views.event_view(e) for e in found],
            "next": found[-1].id if more and found else None}


@router.get("/status", response_model=RunStatus,
            summary="The run: id, whether idle, usage so far, counts")
async def status(runtime: RuntimeDep) -> dict[str, Any]:
    states: dict[str, int] = {}
    for runner in runtime.agents.values():
        states[runner.state.value] = states.get(runner.state.value, 0) + 1
    return {"run_id": runtime.run_id, "idle": runtime.idle(), "agents": len(runtime.agents),
            "agent_states": states, "channels": len(runtime.mailbox.channels()),
            "usage": runtime.usage.as_dict()}
