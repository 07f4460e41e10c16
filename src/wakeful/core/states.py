"""Lifecycle state machines for agents and tasks.

The transition tables are the single source of truth: the runtime, the store and the
CLI all go through :func:`check_agent_transition` / :func:`check_task_transition`, so
an illegal change is refused with the same clear error wherever it is attempted.
"""

from __future__ import annotations

from enum import StrEnum

from wakeful.errors import IllegalTransitionError


class AgentState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    SLEEPING = "sleeping"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TASK_TERMINAL

    @property
    def ended(self) -> bool:
        """Done, failed or cancelled: no run of it is going on (a failed task may still
        be retried by its restart policy)."""
        return self in _TASK_TERMINAL or self is TaskState.FAILED


_A = AgentState
AGENT_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    _A.CREATED: frozenset({_A.RUNNING, _A.STOPPED}),
    _A.RUNNING: frozenset({_A.SLEEPING, _A.PAUSED, _A.STOPPED, _A.FAILED}),
    _A.SLEEPING: frozenset({_A.RUNNING, _A.PAUSED, _A.STOPPED, _A.FAILED}),
    _A.PAUSED: frozenset({_A.RUNNING, _A.STOPPED, _A.FAILED}),
    _A.STOPPED: frozenset({_A.RUNNING}),
    _A.FAILED: frozenset({_A.RUNNING, _A.STOPPED}),
}

_T = TaskState
_TASK_TERMINAL = frozenset({_T.DONE, _T.CANCELLED})
TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    # queued -> queued is not a change; requeue of a running task happens on
    # interruption (shutdown, agent stop, crash recovery) so it can resume later.
    _T.QUEUED: frozenset({_T.RUNNING, _T.CANCELLED}),
    _T.RUNNING: frozenset({_T.WAITING, _T.DONE, _T.FAILED, _T.CANCELLED, _T.QUEUED}),
    _T.WAITING: frozenset({_T.RUNNING, _T.FAILED, _T.CANCELLED, _T.QUEUED}),
    # A failed task may be retried by its agent's restart policy or by a person.
    _T.FAILED: frozenset({_T.QUEUED}),
    _T.DONE: frozenset(),
    _T.CANCELLED: frozenset(),
}


def check_agent_transition(name: str, current: AgentState, target: AgentState) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current -> target`` is allowed."""
    allowed = AGENT_TRANSITIONS[current]
    if target not in allowed:
        raise IllegalTransitionError(
            "agent", name, current.value, target.value, sorted(s.value for s in allowed)
        )


def check_task_transition(task_id: str, current: TaskState, target: TaskState) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current -> target`` is allowed."""
    allowed = TASK_TRANSITIONS[current]
    if target not in allowed:
        raise IllegalTransitionError(
            "task", task_id, current.value, target.value, sorted(s.value for s in allowed)
        )
