"""Tasks: list them, start one, read one (with its conversation), cancel one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.core.states import TaskState
from wakeful.runtime.runtime import MAX_INSTRUCTION_CHARS
from wakeful.server import views
from wakeful.server.errors import TooLarge
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.server.schemas import NewTask

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


@router.get("", summary="Tasks, newest last")
async def list_tasks(runtime: RuntimeDep, agent: str | None = None,
                     state: TaskState | None = None, limit: Limit = 100) -> dict[str, Any]:
    if agent is not None:
        runtime.agent(agent)
    records = await runtime.store.list_tasks(agent=agent, states=[state] if state else None)
    return {"total": len(records),
            "tasks": [views.task_view(r, runtime) for r in records[-limit:]]}


@router.post("", status_code=201, summary="Start a task on an agent")
async def create_task(body: NewTask, runtime: RuntimeDep) -> dict[str, Any]:
    if len(body.instruction) > MAX_INSTRUCTION_CHARS:
        raise TooLarge(f"the instruction is {len(body.instruction):,} characters; the limit "
                       f"is {MAX_INSTRUCTION_CHARS:,}")
    record = await runtime.create_task(body.agent, body.instruction,
                                       created_by=body.created_by)
    return views.task_view(record, runtime)


@router.get("/{task_id}", summary="One task and its conversation")
async def get_task(task_id: str, runtime: RuntimeDep,
                   messages: bool = Query(True, description="include the conversation")
                   ) -> dict[str, Any]:
    record = await runtime.get_task(task_id)
    view = views.task_view(record, runtime)
    if messages:
        view["messages"] = await runtime.store.load_messages(task_id)
    return view


@router.get("/{task_id}/events", summary="The task's events, in order")
async def task_events(task_id: str, runtime: RuntimeDep, limit: Limit = 500
                      ) -> dict[str, Any]:
    await runtime.get_task(task_id)
    await runtime.store.flush()
    events = await runtime.store.query_events(task_id=task_id, limit=limit, newest=True)
    return {"events": [views.event_view(e) for e in events]}


@router.post("/{task_id}/cancel", summary="Cancel a queued, running or waiting task")
async def cancel_task(task_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    record = await runtime.cancel_task(task_id)
    return views.task_view(record, runtime)
