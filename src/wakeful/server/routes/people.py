"""People in the loop: approvals of tool calls, and questions agents ask people.

Who calls is decided in one place (:func:`~wakeful.server.routes.deps.current_person`);
a decision is recorded as that person's, and only a person an approval names (or the
admin) may decide it.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field, JsonValue

from wakeful.approvals.decisions import UnknownApprovalError
from wakeful.approvals.preview import file_diff
from wakeful.approvals.questions import answer_question, open_questions
from wakeful.approvals.rules import ADMIN, may_decide
from wakeful.core.approvals import Approval
from wakeful.errors import WakefulError
from wakeful.runtime.runtime import Runtime
from wakeful.server import views
from wakeful.server.paging import After, after_number, decode, encode
from wakeful.server.responses import Answered, ApprovalsPage, InboxPage, OneApproval
from wakeful.server.routes.deps import CallerDep, Limit, RuntimeDep
from wakeful.server.schemas import _Body, person_address

router = APIRouter(prefix="/api", tags=["people"])

StateFilter = Literal["pending", "approved", "denied", "all"]
APPROVAL_WINDOW = 10_000  # an `after` page reads through this many approvals


class Decision(_Body):
    decision: Literal["approve", "deny"]
    reason: str | None = Field(default=None, max_length=2000,
                               description="why it is denied (the model reads it)")
    arguments: dict[str, JsonValue] | None = Field(
        default=None, description="approve with these arguments instead")


class Answer(_Body):
    body: str = Field(min_length=1, max_length=65_536, description="the answer")


def _person(value: str) -> str:
    """The ``person`` query parameter as an address; a clear 4xx when it is not one."""
    try:
        return person_address(value)
    except ValueError as exc:
        raise WakefulError(f"query parameter 'person': {exc}") from None


def approval_view(approval: Approval, runtime: Runtime, caller: str) -> dict[str, Any]:
    view = approval.to_dict()
    view["may_decide"] = approval.pending and may_decide(caller, approval)
    view["diff"] = file_diff(runtime.resources, approval) if approval.pending else None
    return view


@router.get("/approvals", response_model=ApprovalsPage, summary="Approvals of tool calls "
            "(pending ones by default), oldest first; page with `after` (an approval id)")
async def list_approvals(runtime: RuntimeDep, caller: CallerDep,
                         state: StateFilter = "pending", task_id: str | None = Query(
                             None, max_length=128), agent: str | None = None,
                         limit: Limit = 200, after: After = None) -> dict[str, Any]:
    if agent is not None:
        runtime.agent(agent)
    await runtime.store.flush()
    found = await runtime.approvals.family.listing(
        state=None if state == "all" else state, task_id=task_id, agent=agent,
        limit=limit + 1 if after is None else APPROVAL_WINDOW)
    page, more = _approvals_after(found, decode(after).get("approvals"), limit)
    return {"approvals": [approval_view(a, runtime, caller) for a in page],
            "next": encode({"approvals": more}) if more else None}


def _approvals_after(found: list[Approval], after: Any, limit: int
                     ) -> tuple[list[Approval], list[Any] | None]:
    """Approvals after a (created_at, id) position (they are listed in that order):
    a position stays valid when the approval at it is decided and leaves the list."""
    later = found
    if isinstance(after, list) and len(after) == 2:
        at = (float(after[0]) if isinstance(after[0], int | float) else 0.0, str(after[1]))
        later = [a for a in found if (a.created_at, a.id) > at]
    page = later[:limit]
    return page, [page[-1].created_at, page[-1].id] if len(later) > limit and page else None


@router.get("/approvals/{approval_id}", response_model=OneApproval,
            summary="One approval, with a diff for file writes")
async def get_approval(approval_id: str, runtime: RuntimeDep, caller: CallerDep
                       ) -> dict[str, Any]:
    found = await runtime.approvals.get(approval_id)
    if found is None:
        raise UnknownApprovalError(approval_id)
    return {"approval": approval_view(found, runtime, caller)}


@router.post("/approvals/{approval_id}", response_model=OneApproval,
             summary="Approve (optionally with edited "
             "arguments) or deny (with a reason) a pending approval")
async def decide(approval_id: str, body: Decision, runtime: RuntimeDep, caller: CallerDep
                 ) -> dict[str, Any]:
    if body.decision == "deny" and not (body.reason or "").strip():
        raise WakefulError("body.reason: say why the call is denied (the model reads it)")
    decided = await runtime.approvals.decide(
        approval_id, approve=body.decision == "approve", by=caller, reason=body.reason,
        arguments=body.arguments)
    return {"approval": approval_view(decided, runtime, caller)}


@router.get("/inbox", response_model=InboxPage, summary="What waits for a person: "
            "approvals and questions, oldest first; both lists page with `after` (the "
            "`next` of a page) and `limit`")
async def inbox(runtime: RuntimeDep, caller: CallerDep, person: str | None = Query(
        None, description="whose questions ('person:ada'); default: the caller"),
        limit: Limit = 200, after: After = None) -> dict[str, Any]:
    who = caller if person is None else _person(person)
    await runtime.store.flush()
    pending = await runtime.approvals.family.listing(state="pending")
    mine = [a for a in pending if may_decide(caller, a)]
    asked = await open_questions(runtime.mailbox, runtime.store, who)
    if caller == ADMIN and person is None:  # the admin sees every open question
        asked = [q for p in await _people_asked(runtime)
                 for q in await open_questions(runtime.mailbox, runtime.store, p)]
    cursor = decode(after)
    shown, more_approvals = _approvals_after(mine, cursor.get("approvals"), limit)
    since = cursor.get("questions")
    since = since if isinstance(since, int) and not isinstance(since, bool) else 0
    asked.sort(key=lambda q: q.seq or 0)
    questions, more_questions = after_number(asked, lambda q: q.seq or 0, since, limit,
                                             tail=False)
    more = None
    if more_approvals is not None or more_questions is not None:
        # a list with nothing more keeps its place: its last item, or where it stood
        stood = [shown[-1].created_at, shown[-1].id] if shown else cursor.get("approvals")
        more = encode({"approvals": more_approvals or stood,
                       "questions": more_questions or (questions[-1].seq or 0 if questions
                                                       else since)})
    return {"person": who,
            "approvals": [approval_view(a, runtime, caller) for a in shown],
            "questions": [views.mail_view(q) for q in questions], "next": more}


async def _people_asked(runtime: Runtime) -> list[str]:
    """Every person with a question in their mailbox (the admin's inbox shows all)."""
    seen: list[str] = []
    for event in await runtime.store.query_events(types=["question.asked"], limit=1000,
                                                  newest=True):
        who = str(event.data.get("person") or "")
        if who and who not in seen:
            seen.append(who)
    return seen


@router.post("/questions/{mail_id}/answer", status_code=201, response_model=Answered,
             summary="Answer a question an agent asked (as the person asked)")
async def answer(mail_id: str, body: Answer, runtime: RuntimeDep, caller: CallerDep,
                 person: str | None = Query(None, description="answer as this person "
                                            "(the admin only); default: the one asked")
                 ) -> dict[str, Any]:
    original = await runtime.mailbox.store.get_mail(mail_id)
    if original is None or not (original.payload or {}).get("question"):
        raise WakefulError(f"no question with id {mail_id!r}")
    who = caller
    if caller == ADMIN:  # the admin answers for whoever was asked (or for `person`)
        who = original.recipient if person is None else _person(person)
    sent = await answer_question(runtime.mailbox, who, mail_id, body.body)
    return {"mail": views.mail_view(sent.mail.view())}
