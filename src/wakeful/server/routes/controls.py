"""Who did what to an agent, and undoing it: the control actions recorded on an agent
(by people, the CLI, agents' control tools, the monitor), each with its undo."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from wakeful.runtime.intervention import UndoError
from wakeful.server import views
from wakeful.server.errors import NotFound
from wakeful.server.identity import CallerDep
from wakeful.server.paging import SeqAfter
from wakeful.server.responses import ControlsPage, Undone
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.server.schemas import ControlRequest

router = APIRouter(prefix="/api", tags=["controls"])


@router.get("/agents/{name}/controls", response_model=ControlsPage,
            summary="Control actions on an agent, newest first, with who did them, why, "
            "and whether they were undone; with `after` (an event id) the ones after it "
            "(each page newest first)")
async def agent_controls(name: str, runtime: RuntimeDep, limit: Limit = 50,
                         after: SeqAfter = None) -> dict[str, Any]:
    runtime.agent(name)
    await runtime.store.flush()
    events = await runtime.store.query_events(agent=name, type_prefix="control.",
                                              newest=after is None, limit=limit + 1,
                                              after_id=after or 0)
    more = None
    if after is None:
        events = events[-limit:]
    elif len(events) > limit:
        events = events[:limit]
        more = events[-1].id
    ids = {e.correlation_id for e in events if e.correlation_id}
    undone = await runtime.undone_by(name, ids)
    found = []
    for event in reversed(events):
        view = views.event_view(event)
        control_id = event.correlation_id
        found.append({**view, "control_id": control_id,
                      "action": event.type.removeprefix("control."),
                      "by": event.data.get("by"), "reason": event.data.get("reason"),
                      "undo": event.data.get("undo"),
                      "undone_by": undone.get(control_id or "")})
    return {"agent": name, "controls": found, "next": more}


@router.post("/controls/{control_id}/undo", response_model=Undone,
             summary="Undo a control action: resume "
             "after a pause, wake after a sleep, start after a stop, start a cancelled "
             "task again")
async def undo(control_id: str, runtime: RuntimeDep, caller: CallerDep,
               body: ControlRequest | None = None) -> dict[str, Any]:
    try:
        done = await runtime.undo_control(control_id, by=caller.identity,
                                          reason=body.reason if body else "")
    except UndoError as exc:
        if str(exc).startswith("no control action"):
            raise NotFound(str(exc)) from None
        raise
    return {"control": done.to_dict(),
            "agent": views.agent_summary(runtime, runtime.agent(done.agent))}
