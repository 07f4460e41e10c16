"""The inspector's questions, answered from the store alone.

These work from any process (the CLI beside a running runtime, or after it died),
because everything they need is in the store: tasks with their parent/trace links and
the event log. They are the "why" behind ``wakeful inspect`` and ``wakeful why``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from wakeful.core.records import AgentRecord, Event, TaskRecord
from wakeful.core.states import AgentState, TaskState
from wakeful.core.timers import Timer
from wakeful.core.timespecs import stamp
from wakeful.errors import UnknownTaskError
from wakeful.project.definitions import AgentDefinition
from wakeful.store.base import Store

# Events worth showing inside a causal tree (the rest is in `wakeful trace`).
NOTABLE = ("task.failed", "task.retry_scheduled", "task.recovered", "tool.error",
           "tool.refused", "tool.invalid_args", "model.error", "mail.", "lock.", "resource.",
           "budget.")
MAX_TREE_TASKS = 500


@dataclass
class TaskNode:
    task: TaskRecord
    events: list[Event] = field(default_factory=list)
    children: list[TaskNode] = field(default_factory=list)


async def causal_tree(store: Store, task_id: str) -> TaskNode:
    """The task, the notable things it did, and every task it caused, recursively."""
    root_task = await store.get_task(task_id)
    if root_task is None:
        raise UnknownTaskError(task_id)
    root = TaskNode(root_task)
    nodes = {task_id: root}
    frontier = [task_id]
    while frontier and len(nodes) < MAX_TREE_TASKS:
        children = await store.child_tasks(frontier)
        frontier = []
        for child in children:
            if child.id in nodes:
                continue
            node = TaskNode(child)
            nodes[child.id] = node
            if child.parent_id in nodes:
                nodes[child.parent_id].children.append(node)
            frontier.append(child.id)
    for node in nodes.values():
        events = await store.query_events(task_id=node.task.id, limit=10_000)
        node.events = [e for e in events if e.type.startswith(NOTABLE)]
    return root


@dataclass(frozen=True)
class Blocker:
    task_id: str | None
    what: str


@dataclass
class Explanation:
    agent: str
    state: AgentState
    reason: str
    blockers: list[Blocker]
    running: list[str]
    wakes: list[str] = field(default_factory=list)  # the agent's timers, soonest first


def _ago(ts: float) -> str:
    seconds = max(0.0, time.time() - ts)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _in(due: float) -> str:
    seconds = due - time.time()
    if seconds < 0:
        return "overdue"
    if seconds < 120:
        return f"in {seconds:.0f}s"
    if seconds < 7200:
        return f"in {seconds / 60:.0f}m"
    return f"in {seconds / 3600:.1f}h"


async def _timers(store: Store, agent: str) -> list[Timer]:
    return await store.timers().listing(agent=agent)


async def why_agent(store: Store, definition: AgentDefinition,
                    record: AgentRecord | None) -> Explanation:
    """Why this agent is (or is not) working right now, task by task, and when its
    timers wake it or its tasks next."""
    state = record.state if record else AgentState.CREATED
    reason = record.reason if record else "never started"
    timers = await _timers(store, definition.name)
    task_timers = {t.task_id: t for t in timers if t.action == "wake_task" and t.task_id}
    tasks = await store.list_tasks(
        agent=definition.name,
        states=[TaskState.QUEUED, TaskState.RUNNING, TaskState.WAITING])
    active = [t for t in tasks if t.state is not TaskState.QUEUED]
    blockers: list[Blocker] = []
    running: list[str] = []
    for task in tasks:
        if task.state is TaskState.RUNNING:
            last = await store.query_events(task_id=task.id, limit=1, newest=True)
            activity = f"{last[0].type} {_ago(last[0].ts)}" if last else "no activity yet"
            running.append(f"{task.id} at step {task.step}; last: {activity}")
        elif task.state is TaskState.WAITING:
            changes = await store.query_events(task_id=task.id, types=["task.state"],
                                               limit=1, newest=True)
            on = changes[0].data.get("reason", "unknown") if changes else "unknown"
            since = _ago(changes[0].ts) if changes else ""
            wait = task_timers.get(task.id)
            wakes_at = (f"; wakes at {stamp(wait.next_due)} ({_in(wait.next_due)})"
                        if wait is not None and wait.next_due is not None else "")
            blockers.append(Blocker(task.id, f"waiting on {on} (since {since}){wakes_at}"
                                    + await _held_by(store, task.id)))
        elif state is not AgentState.RUNNING:
            blockers.append(Blocker(task.id, f"queued: the agent is {state.value}"))
        elif len(active) >= definition.max_concurrent_tasks:
            blockers.append(Blocker(task.id, "queued: no free slot ("
                                    f"{len(active)}/{definition.max_concurrent_tasks} "
                                    "tasks running)"))
        else:
            retry = await store.query_events(task_id=task.id, types=["task.retry_scheduled"],
                                             limit=1, newest=True)
            if retry and retry[0].ts + float(retry[0].data.get("delay_s", 0)) > time.time():
                blockers.append(Blocker(task.id, "queued: waiting out a retry backoff "
                                        f"({retry[0].data.get('delay_s')}s)"))
            else:
                blockers.append(Blocker(task.id, "queued: starts when the runtime runs"))
    if state in (AgentState.PAUSED, AgentState.SLEEPING, AgentState.STOPPED,
                 AgentState.FAILED) and not blockers:
        blockers.append(Blocker(None, f"the agent is {state.value}: {reason}"))
    spent = await _agent_budget_spent(store, definition.name)
    if spent is not None:
        blockers.append(Blocker(None, spent))
    wakes = [f"{stamp(t.next_due, t.timezone)} ({_in(t.next_due)}): {t.describe_action()} "
             f"({t.describe_when()}; timer {t.id})"
             for t in timers if t.action != "wake_task" and t.next_due is not None]
    if state is AgentState.SLEEPING and not any(t.action == "wake_agent" for t in timers):
        wakes.insert(0, "no wake-up timer: it sleeps until something wakes it (a "
                        "schedule, or a person)")
    return Explanation(definition.name, state, reason, blockers, running, wakes)


async def _held_by(store: Store, task_id: str) -> str:
    """For a task waiting on a resource: who holds it (from the wait's event)."""
    waits = await store.query_events(task_id=task_id, types=["resource.wait"], limit=1,
                                     newest=True)
    blocked_by = waits[0].data.get("blocked_by") if waits else None
    return f"; {'; '.join(map(str, blocked_by))}" if blocked_by else ""


async def _agent_budget_spent(store: Store, agent: str) -> str | None:
    """The agent's own budget is spent: every task it starts will stop at once."""
    hits = await store.query_events(agent=agent, types=["budget.exhausted"], limit=20,
                                    newest=True)
    spent = next((e for e in reversed(hits) if e.data.get("scope") == "agent"), None)
    if spent is None:
        return None
    data = spent.data
    return (f"its agent budget is exhausted: {data.get('limit_name')} {data.get('used'):g} "
            f"of {data.get('limit'):g} (raise budget.agent in its file to continue)")

