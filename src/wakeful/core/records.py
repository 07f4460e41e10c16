"""Plain records the store persists: agents, tasks, events, runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from wakeful.core.states import AgentState, TaskState


@dataclass(slots=True)
class AgentRecord:
    name: str
    state: AgentState = AgentState.CREATED
    reason: str = ""
    restarts: int = 0
    updated_at: float = field(default_factory=time.time)


@dataclass(slots=True)
class TaskRecord:
    id: str
    agent: str
    instruction: str
    state: TaskState = TaskState.QUEUED
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    step: int = 0
    attempt: int = 0
    result: str | None = None
    error: str | None = None
    error_kind: str | None = None
    parent_id: str | None = None
    created_by: str = "system"
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    scratch: str | None = None  # the task's private scratchpad, as JSON
    trace_id: str | None = None  # root task of the causal tree this task belongs to
    cause_id: str | None = None  # what started it: a parent task, a mail, a timer
    cost: float = 0.0
    progress: float | None = None  # percent done, as the task last reported it
    progress_note: str | None = None  # what the task said about its progress
    owner: str | None = None  # the worker whose claim runs it now (None: nobody)
    truncated: bool = False  # its final answer was cut off (the model's output limit)


@dataclass(slots=True)
class Event:
    """One thing that happened. The store assigns ``id`` when it is written."""

    type: str
    agent: str | None = None
    task_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    run_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class AgentTotals:
    """What an agent's tasks add up to, over every run."""

    tasks: int = 0
    ended: int = 0  # done, failed or cancelled
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    tool_calls: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Fence:
    """Who may write for an agent: the worker holding its lease, at that lease's epoch.

    Every write an owner makes carries its fence and is refused (``FenceError``) in its
    own transaction once another worker has taken the agent (a higher epoch).
    """

    agent: str
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class AgentGrant:
    """An agent lease a worker has just taken, and the tasks it put back in the queue
    (those the previous owner left running or waiting) in the same transaction."""

    agent: str
    epoch: int
    requeued: tuple[str, ...] = ()


@dataclass(slots=True)
class RunRecord:
    id: str
    started_at: float
    pid: int
    ended_at: float | None = None
