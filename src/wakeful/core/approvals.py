"""A person's approval of one tool call: the durable record a waiting task and the
people deciding share.

An approval is made once per call (its ``key`` is the task, the step and the call's
place in the model's reply), so a task resumed after a crash, redoing its step, finds
the approval it asked for instead of asking twice. It is decided once: ``pending`` to
``approved`` or ``denied`` is a compare-and-set in the store, whoever decides first
(a person in the web UI, the CLI in another process, or the timeout) wins.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ApprovalState = Literal["pending", "approved", "denied"]
PENDING: ApprovalState = "pending"
APPROVED: ApprovalState = "approved"
DENIED: ApprovalState = "denied"
TIMEOUT_DECIDER = "timeout"
"""``decided_by`` of an approval its timeout decided (``on_timeout``)."""


def approval_key(task_id: str, step: int, call_index: int) -> str:
    """One call of one step of one task: the same when the task is resumed."""
    return f"{task_id}:{step}:{call_index}"


@dataclass(slots=True)
class Approval:
    id: str
    key: str
    task_id: str
    agent: str
    tool: str
    arguments: str  # the call's arguments as the model sent them (JSON text)
    summary: str  # "write_file(docs/plan.md)": what a person is asked about
    approvers: list[str] = field(default_factory=list)  # empty: any person
    on_timeout: Literal["deny", "approve"] = "deny"
    due_at: float | None = None  # when the timeout decides (the runtime's clock)
    call_id: str = ""  # the model's id of the call (the chat shows the decision there)
    state: ApprovalState = PENDING
    created_at: float = field(default_factory=time.time)
    decided_at: float | None = None
    decided_by: str | None = None
    reason: str | None = None  # a denial's reason (the model reads it)
    new_arguments: str | None = None  # approved with edited arguments (JSON text)
    decided_seq: int | None = None  # order of decisions, for watchers in other processes

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    def arguments_dict(self) -> dict[str, Any]:
        """The arguments that run: the edited ones, if a person edited them."""
        text = self.new_arguments if self.new_arguments is not None else self.arguments
        try:
            value = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = ("id", "key", "task_id", "agent", "tool", "arguments", "summary", "approvers",
           "on_timeout", "due_at", "call_id", "state", "created_at", "decided_at",
           "decided_by", "reason", "new_arguments", "decided_seq")


def approval_row(approval: Approval) -> tuple[Any, ...]:
    values = approval.to_dict()
    values["approvers"] = json.dumps(approval.approvers)
    return tuple(values[c] for c in COLUMNS)


def approval_from_row(row: Any) -> Approval:
    values = dict(zip(COLUMNS, row, strict=True))
    values["approvers"] = json.loads(values["approvers"] or "[]")
    return Approval(**values)
