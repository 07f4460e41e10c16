"""What the API answers: one pydantic model per response, so the OpenAPI schema says
what every route returns (and a client can be generated from it).

The views in :mod:`wakeful.server.views` build plain dicts; these models validate and
document them. Every model allows fields it does not declare (``extra="allow"``): a
field added to a view reaches clients at once, and a field forgotten here is never
silently dropped from a response the web UI reads.

A list is a page: ``next`` is the cursor of the page after it (pass it as ``after``),
``null`` when nothing follows yet. Lists read backwards (chat history) also give
``older`` (pass it as ``before``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wakeful.core.mail import Mail

NEXT = "the cursor of the following page (pass it as `after`); null: nothing follows yet"


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# agents ------------------------------------------------------------------------------
class Waiting(Out):
    task_id: str
    on: Any = Field(description="what the task waits on (a tool, a lock, a person)")


class AgentSummary(Out):
    name: str
    role: str | None = None
    state: str
    reason: str | None = None
    since: float | None = None
    restarts: int = 0
    running: int = Field(0, description="tasks running now")
    queued: int = Field(0, description="tasks waiting for a free slot")
    waiting: list[Waiting] = Field(default_factory=list)
    max_concurrent_tasks: int | None = None
    next_wake: float | None = Field(None, description="when its next timer fires")


class AgentDefinitionView(Out):
    role: str | None = None
    instructions: str = ""
    model: str | None = None
    tools: list[str] = Field(default_factory=list)
    max_concurrent_tasks: int | None = None
    max_steps: int | None = None
    restart: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] = Field(default_factory=dict)
    answer_mail: Any = None
    schedule: list[dict[str, Any]] = Field(default_factory=list)
    can_control: list[str] = Field(default_factory=list)
    made_at_run_time: bool = False


class AgentWithDefinition(AgentSummary):
    definition: AgentDefinitionView


class Blocker(Out):
    task_id: str | None
    what: str


class Why(Out):
    blockers: list[Blocker]
    running: list[str]


class Usage(Out):
    tasks: int
    input_tokens: int
    output_tokens: int
    tokens: int
    cost: float
    tool_calls: int
    this_run: dict[str, Any] | None = None


class AgentLocks(Out):
    held: list[dict[str, Any]]
    waiting: list[dict[str, Any]]
    operations: list[dict[str, Any]]


class AgentDetail(AgentWithDefinition):
    why: Why
    usage: Usage
    locks: AgentLocks
    timers: list[dict[str, Any]]
    channels: list[str]


class AgentsPage(Out):
    agents: list[AgentSummary]
    next: str | None = Field(None, description=NEXT)


class ControlDone(Out):
    id: str
    action: str
    agent: str
    by: str
    reason: str
    task_id: str | None = None
    undo: dict[str, str] | None = None


class AgentControlled(AgentSummary):
    control: ControlDone


class AgentRemoved(Out):
    removed: str
    running: str
    cancelled: list[str] = Field(description="the tasks cancelled")


class WhoAmI(Out):
    identity: str
    name: str | None = None
    role: str
    project_token: bool


class PersonView(Out):
    name: str
    address: str
    role: str
    created_at: float
    created_by: str


class PeoplePage(Out):
    people: list[PersonView]
    next: str | None = Field(None, description=NEXT)


# events and controls ------------------------------------------------------------------
class EventView(Out):
    id: int | None
    type: str
    agent: str | None = None
    task_id: str | None = None
    ts: float
    data: dict[str, Any] = Field(default_factory=dict)
    trace: str | None = None
    cause: str | None = None


class EventsPage(Out):
    events: list[EventView]
    next: int | None = Field(None, description=NEXT + " (an event id)")


class ControlRow(EventView):
    control_id: str | None = None
    action: str
    by: str | None = None
    reason: str | None = None
    undo: Any = None
    undone_by: Any = None


class ControlsPage(Out):
    agent: str
    controls: list[ControlRow]
    next: int | None = Field(None, description=NEXT + " (an event id)")


class Undone(Out):
    control: ControlDone
    agent: AgentSummary


class RunStatus(Out):
    run_id: str | None
    idle: bool
    agents: int
    agent_states: dict[str, int]
    channels: int
    usage: dict[str, Any]


class LocksPage(Out):
    locks: list[dict[str, Any]]
    waiting: list[dict[str, Any]]
    operations: list[dict[str, Any]]
    recent_deadlocks: list[dict[str, Any]] = Field(default_factory=list)
    next: str | None = Field(None, description=NEXT)


# tasks --------------------------------------------------------------------------------
class TaskView(Out):
    id: str
    agent: str
    state: str
    instruction: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    step: int = 0
    max_steps: int | None = None
    attempt: int = 0
    result: str | None = None
    error: str | None = None
    error_kind: str | None = None
    parent_id: str | None = None
    created_by: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    cost: float = 0.0
    trace_id: str | None = None
    cause_id: str | None = None
    waiting_on: Any = None
    truncated: bool = False
    progress: float | None = None
    progress_note: str | None = None


class TaskChild(Out):
    id: str
    agent: str
    state: str
    instruction: str


class TaskDetail(TaskView):
    messages: list[dict[str, Any]] | None = Field(
        None, description="the conversation (absent with messages=false)")
    children: list[TaskChild] = Field(description="the tasks it delegated to")


class TaskControlled(TaskView):
    control: ControlDone


class TasksPage(Out):
    total: int = Field(description="tasks in the whole list (not just this page)")
    tasks: list[TaskView]
    next: str | None = Field(None, description=NEXT + " (a task id)")


class TreeNode(Out):
    id: str
    agent: str
    state: str
    instruction: str
    error_kind: str | None = None
    events: int
    children: list[TreeNode]


class TaskTree(Out):
    task_id: str
    root: TreeNode


# mail and channels --------------------------------------------------------------------
class SentMail(Out):
    mail: Mail
    duplicate: bool = False
    delivered_to: int = Field(0, description="how many mailboxes got it")


class MailPage(Out):
    mail: list[Mail]
    next: str | None = Field(None, description=NEXT)


class Delivery(Out):
    owner: str
    status: str | None
    attempts: int
    read_at: float | None = None
    acked_at: float | None = None


class MailDetail(Out):
    mail: Mail
    deliveries: list[Delivery]


class AgentMailPage(Out):
    inbox: list[Mail]
    sent: list[Mail]
    next: str | None = Field(None, description=NEXT)


class ConversationPage(Out):
    agent: str
    person: str
    mail: list[Mail]
    next: int | None = Field(None, description=NEXT + " (a mail seq)")
    older: int | None = Field(None, description=(
        "the cursor of the page before it (pass it as `before`); null: nothing older"))


class ChannelView(Out):
    name: str
    topic: str = ""
    members: list[str]
    created_at: float | None = None
    created_by: str | None = None


class ChannelListed(ChannelView):
    unread: int | None = Field(None, description="posts the member has not read")


class ChannelsPage(Out):
    channels: list[ChannelListed]
    next: str | None = Field(None, description=NEXT + " (a channel name)")


class ChannelAdded(ChannelView):
    added: list[str]


class PostsPage(Out):
    channel: str
    posts: list[Mail]
    next: int | None = Field(None, description=NEXT + " (a mail seq)")
    older: int | None = Field(None, description=(
        "the cursor of the page before it (pass it as `before`); null: nothing older"))


class Posted(Out):
    mail: Mail
    delivered_to: int = Field(0, description="how many mailboxes got it")


class ReadMark(Out):
    channel: str
    member: str
    unread: int


# people in the loop -------------------------------------------------------------------
class ApprovalView(Out):
    id: str
    key: str
    task_id: str
    agent: str
    tool: str
    arguments: str
    summary: str
    approvers: list[str]
    on_timeout: str
    due_at: float | None = None
    call_id: str = ""
    state: str
    created_at: float
    decided_at: float | None = None
    decided_by: str | None = None
    reason: str | None = None
    new_arguments: str | None = None
    decided_seq: int | None = None
    may_decide: bool
    diff: Any = Field(None, description="for a file write: the change it makes")


class ApprovalsPage(Out):
    approvals: list[ApprovalView]
    next: str | None = Field(None, description=NEXT + " (an approval id)")


class OneApproval(Out):
    approval: ApprovalView


class InboxPage(Out):
    person: str
    approvals: list[ApprovalView]
    questions: list[Mail]
    next: str | None = Field(None, description=NEXT)


class Answered(Out):
    mail: Mail
