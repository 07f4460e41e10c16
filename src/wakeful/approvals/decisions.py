"""Deciding an approval, once: shared by the runtime (web UI, API) and by the CLI,
which decides in the store while the runtime runs in another process.

The decision and its ``approval.decided`` event are one compare-and-set transaction
(see :mod:`wakeful.store.approvals`): whoever decides first wins, the others are told
who did and when; the waiting task learns of it at once in its own process, or within
``poll_interval_s`` in another.
"""

from __future__ import annotations

import json
import time
from typing import Any

from wakeful.approvals.rules import may_decide
from wakeful.core.approvals import APPROVED, DENIED, TIMEOUT_DECIDER, Approval
from wakeful.core.records import Event
from wakeful.errors import AccessDeniedError, WakefulError
from wakeful.observe.events import EventLog
from wakeful.store.approvals import ApprovalStore

MAX_REASON_CHARS = 2000


class AlreadyDecidedError(WakefulError):
    """Someone decided first: their decision stands."""


class UnknownApprovalError(WakefulError):
    def __init__(self, approval_id: str) -> None:
        super().__init__(f"no approval with id {approval_id!r} (wakeful approvals lists "
                         "the pending ones)")


def edited_arguments(arguments: Any) -> str | None:
    """Edited arguments as the JSON text the call runs with; a clear error if they are
    not a JSON object (given as text or as an object)."""
    if arguments is None:
        return None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise WakefulError(f"edited arguments are not valid JSON ({exc.msg} at column "
                               f"{exc.colno})") from None
    if not isinstance(arguments, dict):
        raise WakefulError(f"edited arguments must be a JSON object, got "
                           f"{type(arguments).__name__}")
    return json.dumps(arguments)


def decided_event(log: EventLog, approval: Approval, *, state: str, by: str,
                  reason: str | None, new_arguments: str | None, at: float) -> Event:
    return log.make("approval.decided", agent=approval.agent, task_id=approval.task_id,
                    data={"approval_id": approval.id, "tool": approval.tool,
                          "summary": approval.summary, "decision": state,
                          "decided_by": by, "reason": reason,
                          "edited": new_arguments is not None,
                          "arguments": new_arguments, "decided_at": at,
                          "timed_out": by == TIMEOUT_DECIDER})


async def decide(family: ApprovalStore, log: EventLog, approval_id: str, *, approve: bool,
                 by: str, reason: str | None = None, arguments: Any = None,
                 at: float | None = None, check_person: bool = True,
                 known: Approval | None = None) -> tuple[Approval, Event]:
    """Approve (optionally with edited ``arguments``) or deny (with ``reason``) a pending
    approval as ``by``. Raises a clear error when it does not exist, was decided
    already, ``by`` may not decide it, or the arguments are not a JSON object.
    ``known``: the approval as read before (saves a read; the compare-and-set still
    decides who wins)."""
    current = known if known is not None and known.id == approval_id else \
        await family.get(approval_id)
    if current is None:
        raise UnknownApprovalError(approval_id)
    if check_person and not may_decide(by, current):
        raise AccessDeniedError(f"{by} may not decide approval {approval_id}: only "
                                f"{', '.join(current.approvers)} (or the admin) may")
    if not current.pending:
        raise AlreadyDecidedError(_already(current))
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise WakefulError(f"the reason is {len(reason)} characters; the limit is "
                           f"{MAX_REASON_CHARS}")
    new_arguments = edited_arguments(arguments) if approve else None
    if not approve and not (reason or "").strip():
        reason = "no reason given"
    state = APPROVED if approve else DENIED
    when = time.time() if at is None else at
    event = decided_event(log, current, state=state, by=by, reason=reason,
                          new_arguments=new_arguments, at=when)
    decided = await family.decide(approval_id, state, by, at=when, reason=reason,
                                  new_arguments=new_arguments, event=event)
    if decided is None:  # someone decided between our read and our write
        raise AlreadyDecidedError(_already(await family.get(approval_id) or current))
    return decided, event


def _already(approval: Approval) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(approval.decided_at or 0))
    return (f"approval {approval.id} was already {approval.state} by "
            f"{approval.decided_by} at {when}")
