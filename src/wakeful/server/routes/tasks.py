"""Tasks: list them, start one, read one (with its conversation), cancel one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.core.states import TaskState
from wakeful.observe.inspect import TaskNode, causal_tree
from wakeful.runtime.tasks import MAX_INSTRUCTION_CHARS
from wakeful.server import views
from wakeful.server.errors import TooLarge
from wakeful.server.identity import CallerDep, speaking_as
from wakeful.server.paging import SeqAfter, after_key
from wakeful.server.responses import (
    EventsPage,
    TaskControlled,
    TaskDetail,
    TasksPage,
    TaskTree,
    TaskView,
)
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.server.schemas import ControlRequest, NewTask

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


@router.get("", response_model=TasksPage,
            summary="Tasks, newest last; page forwards with `after` and `next`")
async def list_tasks(runtime: RuntimeDep, agent: str | None = None,
                     state: TaskState | None = None, limit: Limit = 100,
                     after: str | None = Query(None, max_length=128, description=(
                         "a task id: the tasks after it, oldest first (`next` of a page); "
                         "empty: from the first"))
                     ) -> dict[str, Any]:
    if agent is not None:
        runtime.agent(agent)
    records = await runtime.store.list_tasks(agent=agent, states=[state] if state else None)
    # no `after`: the newest `limit`
    page, more = after_key(records, lambda r: r.id, after, limit, what="task", tail=True)
    return {"total": len(records), "tasks": [views.task_view(r, runtime) for r in page],
            "next": more}


@router.post("", status_code=201, response_model=TaskView, summary="Start a task on an agent")
async def create_task(body: NewTask, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    if len(body.instruction) > MAX_INSTRUCTION_CHARS:
        raise TooLarge(f"the instruction is {len(body.instruction):,} characters; the limit "
                       f"is {MAX_INSTRUCTION_CHARS:,}")
    record = await runtime.create_task(
        body.agent, body.instruction,
        created_by=speaking_as(caller, body.created_by, "body.created_by"))
    return views.task_view(record, runtime)


@router.get("/{task_id}", response_model=TaskDetail, response_model_exclude_unset=True,
            summary="One task and its conversation")
async def get_task(task_id: str, runtime: RuntimeDep,
                   messages: bool = Query(True, description="include the conversation")
                   ) -> dict[str, Any]:
    record = await runtime.get_task(task_id)
    view = views.task_view(record, runtime)
    if messages:
        view["messages"] = await runtime.store.load_messages(task_id)
    # Delegations, linked both ways: the task that asked, and the tasks it asked for.
    view["children"] = [{"id": c.id, "agent": c.agent, "state": c.state.value,
                         "instruction": c.instruction}
                        for c in await runtime.store.child_tasks([task_id])]
    return view


@router.get("/{task_id}/tree", response_model=TaskTree,
            summary="The causal tree of the task's trace (its root "
            "task and every task it caused), as `wakeful inspect` shows it")
async def task_tree(task_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    record = await runtime.get_task(task_id)
    root = await causal_tree(runtime.store, record.trace_id or record.id)

    def node(found: TaskNode) -> dict[str, Any]:
        t = found.task
        return {"id": t.id, "agent": t.agent, "state": t.state.value,
                "instruction": t.instruction, "error_kind": t.error_kind,
                "events": len(found.events), "children": [node(c) for c in found.children]}

    return {"task_id": task_id, "root": node(root)}


@router.get("/{task_id}/events", response_model=EventsPage, summary="The task's events, "
            "in order: the newest `limit`, or with `after` (an event id) those after it")
async def task_events(task_id: str, runtime: RuntimeDep, limit: Limit = 500,
                      after: SeqAfter = None) -> dict[str, Any]:
    await runtime.get_task(task_id)
    await runtime.store.flush()
    events = await runtime.store.query_events(task_id=task_id, limit=limit + 1,
                                              newest=after is None, after_id=after or 0)
    if after is None:
        return {"events": [views.event_view(e) for e in events[-limit:]], "next": None}
    more = events[limit - 1].id if len(events) > limit else None
    return {"events": [views.event_view(e) for e in events[:limit]], "next": more}


@router.post("/{task_id}/cancel", response_model=TaskControlled,
             summary="Cancel a queued, running or waiting task")
async def cancel_task(task_id: str, runtime: RuntimeDep, caller: CallerDep,
                      body: ControlRequest | None = None) -> dict[str, Any]:
    done = await runtime.control("cancel", task_id, by=caller.identity,
                                 reason=body.reason if body else "")
    assert done.task is not None
    return {**views.task_view(done.task, runtime), "control": done.to_dict()}


@router.post("/{task_id}/restart", status_code=201, response_model=TaskControlled,
             summary="Start a task again (a new "
             "task with the same instruction; the undo of a cancel)")
async def restart_task(task_id: str, runtime: RuntimeDep, caller: CallerDep,
                       body: ControlRequest | None = None) -> dict[str, Any]:
    done = await runtime.control("restart_task", task_id, by=caller.identity,
                                 reason=body.reason if body else "")
    assert done.task is not None
    return {**views.task_view(done.task, runtime), "control": done.to_dict()}
