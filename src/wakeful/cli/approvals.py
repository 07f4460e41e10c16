"""``wakeful approvals``, ``wakeful approve``, ``wakeful deny``: people's decisions on
tool calls, made in the store.

They work whether or not a runtime is running: a decision is a compare-and-set in the
store with its ``approval.decided`` event, which a running runtime (in any process)
finds within its ``poll_interval_s`` and the waiting task goes on; with no runtime
running, the task finds it when it resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from wakeful.approvals.decisions import decide
from wakeful.approvals.rules import ADMIN
from wakeful.core.approvals import Approval
from wakeful.core.timespecs import stamp
from wakeful.observe.events import EventLog
from wakeful.store import Store
from wakeful.store.approvals import approval_store

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="The project folder.",
                                          show_default="current folder")]
AsOpt = Annotated[str, typer.Option("--as", help="Decide as this person ('person:NAME').")]


def _person(value: str) -> str:
    from wakeful.cli.common import fail

    who = value if value.startswith("person:") else f"person:{value}"
    if who == "person:" or " " in who:
        raise fail(f"--as: {value!r} is not a person (write person:NAME)")
    return who


def approvals(
    project: ProjectOpt = Path("."),
    show_all: Annotated[bool, typer.Option("--all", help="Also decided ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list.")] = False,
) -> None:
    """Tool calls waiting for a person's approval (with --all: decided ones too)."""
    from wakeful.cli.common import open_project, out, run_async, with_store

    loaded = open_project(project)

    async def read(store: Store) -> list[Approval]:
        family = approval_store(store)
        return await family.listing(state=None if show_all else "pending")

    found = run_async(lambda: with_store(loaded, read))
    if as_json:
        out.print_json(json.dumps([a.to_dict() for a in found]))
        return
    if not found:
        out.print("No approvals." if show_all else "No approvals waiting.")
        return
    table = Table(title=f"Approvals ({len(found)})", title_justify="left")
    for column in ("id", "agent", "task", "call", "approvers", "asked", "state"):
        if column in ("id", "task"):  # never cut: they are typed back in
            table.add_column(column, no_wrap=True, min_width=len(found[0].id))
        else:
            table.add_column(column, overflow="fold")
    now = time.time()
    for a in found:
        state = a.state if a.pending else f"{a.state} by {a.decided_by}"
        due = f" (timeout {stamp(a.due_at)})" if a.pending and a.due_at else ""
        table.add_row(a.id, Text(a.agent), a.task_id, Text(a.summary),
                      Text(", ".join(a.approvers) or "anyone"),
                      f"{max(0, now - a.created_at):.0f}s ago", Text(state + due))
    out.print(table)


def _decide(project: Path, approval_id: str, approve: bool, by: str,
            reason: str | None, arguments: str | None) -> Approval:
    from wakeful.cli.common import open_project, run_async, with_store

    loaded = open_project(project)

    async def act(store: Store) -> Approval:
        decided, _ = await decide(approval_store(store), EventLog(store), approval_id,
                                  approve=approve, by=by, reason=reason,
                                  arguments=arguments)
        return decided

    return run_async(lambda: with_store(loaded, act))


def approve(
    approval_id: Annotated[str, typer.Argument(help="The approval (wakeful approvals).")],
    project: ProjectOpt = Path("."),
    args: Annotated[str | None, typer.Option("--args", help="Run the call with these "
                                             "arguments instead (a JSON object).")] = None,
    person: AsOpt = ADMIN,
) -> None:
    """Approve a tool call (optionally with edited arguments): the task goes on."""
    from wakeful.cli.common import out

    decided = _decide(project, approval_id, True, _person(person), None, args)
    edited = " with edited arguments" if decided.new_arguments is not None else ""
    out.print(Text(f"Approved {decided.summary}{edited} ({decided.id}, task "
                   f"{decided.task_id})."))


def deny(
    approval_id: Annotated[str, typer.Argument(help="The approval (wakeful approvals).")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: the model reads it "
                                        "as the tool's result.")],
    project: ProjectOpt = Path("."),
    person: AsOpt = ADMIN,
) -> None:
    """Deny a tool call with a reason: the call does not run, the model is told why."""
    from wakeful.cli.common import fail, out

    if not reason.strip():
        raise fail("--reason: say why the call is denied (the model reads it)")
    decided = _decide(project, approval_id, False, _person(person), reason, None)
    out.print(Text(f"Denied {decided.summary} ({decided.id}, task {decided.task_id})."))



def register(app: typer.Typer) -> None:
    app.command()(approvals)
    app.command()(approve)
    app.command()(deny)
    app.command()(answer)


def answer(
    question_id: Annotated[str, typer.Argument(help="The question's mail id (wakeful "
                                               "mail list --to person:NAME).")],
    text: Annotated[str, typer.Argument(help="Your answer.")],
    project: ProjectOpt = Path("."),
    person: Annotated[str | None, typer.Option("--as", help="Answer as this person "
                                               "(default: the one asked).")] = None,
) -> None:
    """Answer a question an agent asked with ask_person: the waiting task goes on."""
    from wakeful.approvals.questions import answer_question
    from wakeful.cli.common import out
    from wakeful.cli.mail import _run
    from wakeful.mailbox.service import Mailbox

    async def send(mailbox: Mailbox) -> str:
        original = await mailbox.store.get_mail(question_id)
        who = _person(person) if person else (
            original.recipient if original is not None else "person:admin")
        sent = await answer_question(mailbox, who, question_id, text)
        return str(sent.id)

    sent_id = _run(project, send)
    out.print(Text(f"Answered question {question_id} (mail {sent_id})."))
