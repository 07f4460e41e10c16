"""``wakeful mail ...`` and ``wakeful channel ...``: mail from the command line.

The CLI speaks as a person (``--from person:NAME``) and opens the mailbox "remote": it
writes to the store, and a running runtime picks the mail up within its
``poll_interval_s``; with no runtime running, the next ``wakeful run`` delivers it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wakeful.core.mail import Mail
from wakeful.text import describe_text

if TYPE_CHECKING:
    from wakeful.mailbox.service import Mailbox
    from wakeful.project.loader import Project

T = TypeVar("T")
mail_app = typer.Typer(help="Send, list and inspect mail; handle dead letters.",
                       no_args_is_help=True)
channel_app = typer.Typer(help="Channels: group conversations of agents and people.",
                          no_args_is_help=True)

ProjectOption = Annotated[Path, typer.Option("--project", "-p", help="The project folder.",
                                             show_default="current folder")]
FromOption = Annotated[str, typer.Option("--from", help="Who is sending (a person).")]
DEFAULT_PERSON = "person:operator"


def _run(project: Path, action: Callable[[Mailbox], Awaitable[T]]) -> T:
    """Open the project's mailbox (remote), run ``action``, close it."""
    from wakeful.cli.common import open_project, run_async

    loaded = open_project(project)
    return run_async(lambda: _with_mailbox(loaded, action))


async def _with_mailbox(project: Project, action: Callable[[Mailbox], Awaitable[T]]) -> T:
    """The mailbox over the project's store for one command. On a store that cannot
    take writes the session closes the store first, failing the writes it holds; the
    mailbox's committer then sees them fail, so closing it does not wait forever."""
    from wakeful.cli.common import store_where
    from wakeful.cli.faults import session
    from wakeful.mailbox.service import Mailbox
    from wakeful.observe.events import EventLog
    from wakeful.store import open_store

    store = open_store(project.store_url(), project.config.store.synchronous)
    mailbox: Mailbox | None = None

    async def use() -> T:
        nonlocal mailbox
        mailbox = Mailbox(store.mail(), project.config.mailbox,
                          events=EventLog(store), agents=project.agents.keys, live=False)
        await mailbox.open()
        result = await action(mailbox)
        await mailbox.close()  # its committer's last writes, inside the session
        return result

    try:
        return await session(store, store_where(project), use)
    finally:
        if mailbox is not None:
            await mailbox.close()


def _out() -> Any:
    from wakeful.cli.common import out

    return out


def _fail(message: str) -> typer.Exit:
    from wakeful.cli.common import fail

    return fail(message)


def _stamp(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _clip(text: str, width: int = 50) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: str | None) -> Text:
    """Rich reads a plain ``str`` cell as markup: a body like ``[/b] hi`` would crash."""
    return Text(value or "")


def mail_table(mails: list[Mail], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "from", "to", "subject / body", "status", "tries"):
        table.add_column(column, no_wrap=column == "id")
    for m in mails:
        text = m.subject + (" — " if m.subject and m.body else "") + m.body
        to = m.recipient if m.owner in (None, m.recipient) else f"{m.recipient} → {m.owner}"
        table.add_row(_cell(m.id), _cell(m.sender), _cell(to), _cell(_clip(text, 40)),
                      m.status or "-", str(m.attempts))
    return table


def _payload(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"--payload is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise _fail(f"--payload must be a JSON object, got {type(value).__name__}")
    return value


def _storable(option: str, value: str) -> None:
    """Refuse an argument the store cannot hold (bytes that are not UTF-8 reach Python
    as lone surrogates) with one line, not a traceback from the store."""
    why = describe_text(value)
    if why is not None:
        raise _fail(f"{option} {why.replace('send UTF-8 text', 'give UTF-8 text')}")


MAX_BODY_FILE_BYTES = 64 * 1024 * 1024  # far above any mail limit: refused there, clearly


def _read_body(path: Path) -> str:
    """The body from a file or standard input ('-'), as UTF-8 text, or a clear error."""
    where = "standard input" if str(path) == "-" else str(path)
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_BODY_FILE_BYTES + 1)
        else:
            with path.open("rb") as handle:
                data = handle.read(MAX_BODY_FILE_BYTES + 1)
    except OSError as exc:
        raise _fail(f"--body-file: cannot read {where}: {exc.strerror or exc}") from None
    if len(data) > MAX_BODY_FILE_BYTES:
        raise _fail(f"--body-file: {where} is larger than {MAX_BODY_FILE_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"--body-file: {where} is not UTF-8 text (byte {exc.start})") from None


# mail -----------------------------------------------------------------------------
@mail_app.command("send")
def mail_send(
    to: Annotated[str, typer.Argument(help="agent, agent/task, #channel, * or person:NAME")],
    body: Annotated[str, typer.Argument(help="The message.")] = "",
    body_file: Annotated[Path | None, typer.Option(
        "--body-file", "-f", help="Read the message from this file ('-': standard input).",
        allow_dash=True)] = None,
    subject: Annotated[str, typer.Option("--subject", "-s")] = "",
    sender: FromOption = DEFAULT_PERSON,
    payload: Annotated[str | None, typer.Option(help="A JSON object sent along.")] = None,
    priority: Annotated[str, typer.Option(help="low, normal, high or urgent")] = "normal",
    thread: Annotated[str | None, typer.Option(help="Continue this thread.")] = None,
    key: Annotated[str | None, typer.Option(help="Idempotency key: a second send with "
                                            "the same key is dropped.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Send a mail (stored at once; delivered by the running runtime)."""
    data = _payload(payload)
    if body_file is not None:
        if body:
            raise _fail("give the body as an argument or with --body-file, not both")
        body = _read_body(body_file)

    async def send(mailbox: Mailbox) -> Any:
        return await mailbox.send(sender, to, subject, body, payload=data, priority=priority,
                                  thread_id=thread, idempotency_key=key)

    sent = _run(project, send)
    note = " (duplicate: the first mail with this key was kept)" if sent.duplicate else ""
    _out().print(f"Sent mail [bold]{sent.id}[/] to {escape(to)}{note}.", highlight=False)


@mail_app.command("list")
def mail_list(
    to: Annotated[str | None, typer.Option("--to", help="Only this mailbox.")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="Only from this sender.")] = None,
    status: Annotated[str | None, typer.Option(
        help="pending, delivered, acked or dead")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (newest).")] = 50,
    project: ProjectOption = Path("."),
) -> None:
    """List deliveries of mail (one row per mailbox reached), newest last."""
    if status is not None and status not in ("pending", "delivered", "acked", "dead"):
        raise _fail(f"--status {status!r}: expected pending, delivered, acked or dead")
    mails = _run(project, lambda m: m.list_mail(owner=to, sender=sender, status=status,
                                                limit=limit))
    _out().print(mail_table(mails, f"Mail ({len(mails)})"))


@mail_app.command("show")
def mail_show(
    mail_id: Annotated[str, typer.Argument(help="The mail id.")],
    project: ProjectOption = Path("."),
) -> None:
    """Show one mail in full, and where it was delivered."""
    async def show(mailbox: Mailbox) -> tuple[Mail, list[Mail]]:
        return await mailbox.read(None, mail_id), await mailbox.deliveries(mail_id)

    mail, deliveries = _run(project, show)
    out = _out()
    out.print(f"[bold]{mail.id}[/]  from {escape(mail.sender)} to {escape(mail.recipient)}  "
              f"({_stamp(mail.created_at)}, priority {mail.priority})", highlight=False)
    for label, value in (("thread", mail.thread_id), ("in reply to", mail.in_reply_to),
                         ("reply to", mail.reply_to), ("correlation", mail.correlation_id),
                         ("idempotency key", mail.idempotency_key)):
        if value:
            out.print(f"  {label}: {escape(value)}", highlight=False)
    if mail.subject:
        out.print(f"[bold]{escape(mail.subject)}[/]", highlight=False)
    if mail.body:
        out.print(Text(mail.body), highlight=False, soft_wrap=True)
    if mail.payload is not None:
        out.print_json(json.dumps(mail.payload))
    table = Table(title="Deliveries", title_justify="left")
    for column in ("mailbox", "status", "tries", "delivered", "read", "acked", "last error"):
        table.add_column(column)
    for d in deliveries:
        table.add_row(_cell(d.owner or "-"), d.status or "-", str(d.attempts),
                      _stamp(d.delivered_at), _stamp(d.read_at), _stamp(d.acked_at),
                      _cell(_clip(d.last_error or "", 60)))
    out.print(table)


@mail_app.command("dead-letters")
def mail_dead_letters(
    to: Annotated[str | None, typer.Option("--to", help="Only this mailbox.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (newest).")] = 100,
    project: ProjectOption = Path("."),
) -> None:
    """Mail delivered max_deliveries times without being acknowledged."""
    mails = _run(project, lambda m: m.dead_letters(owner=to, limit=limit))
    out = _out()
    if not mails:
        out.print("No dead letters.")
        return
    out.print(mail_table(mails, f"Dead letters ({len(mails)})"))
    for m in mails:
        out.print(Text(f"  {m.id} → {m.owner}: {m.last_error}"), highlight=False,
                  soft_wrap=True)
    out.print("Send one again with [bold]wakeful mail retry ID[/].")


@mail_app.command("retry")
def mail_retry(
    mail_id: Annotated[str, typer.Argument(help="The dead-lettered mail id.")],
    to: Annotated[str | None, typer.Option("--to", help="Only its delivery to this "
                                           "mailbox.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Take a mail out of the dead-letter box and deliver it again."""
    count = _run(project, lambda m: m.retry(mail_id, owner=to))
    _out().print(f"Mail {escape(mail_id)} will be delivered again ({count} mailbox"
                 f"{'es' if count != 1 else ''}).", highlight=False)


# channels --------------------------------------------------------------------------
MembersOption = Annotated[list[str] | None, typer.Option(
    "--member", "-m", help="An agent or person:NAME (repeatable).")]


@channel_app.command("create")
def channel_create(
    name: Annotated[str, typer.Argument(help="The channel name (without '#').")],
    member: MembersOption = None,
    topic: Annotated[str, typer.Option(help="What the channel is for.")] = "",
    sender: FromOption = DEFAULT_PERSON,
    project: ProjectOption = Path("."),
) -> None:
    """Create a channel."""
    members = member or []
    _storable("--topic", topic)
    _run(project, lambda m: m.create_channel(name, members, topic=topic, created_by=sender))
    _out().print(f"Created #{escape(name.removeprefix('#'))} with {len(members)} members.",
                 highlight=False)


@channel_app.command("add")
def channel_add(
    name: Annotated[str, typer.Argument(help="The channel.")],
    members: Annotated[list[str], typer.Argument(help="Agents or person:NAME.")],
    project: ProjectOption = Path("."),
) -> None:
    """Add members to a channel."""
    added = _run(project, lambda m: m.add_members(name, members))
    _out().print(Text(f"Added {', '.join(added) or 'nobody new'} to "
                      f"#{name.removeprefix('#')}."),
                 highlight=False)


@channel_app.command("remove")
def channel_remove(
    name: Annotated[str, typer.Argument(help="The channel.")],
    member: Annotated[str, typer.Argument(help="An agent or person:NAME.")],
    project: ProjectOption = Path("."),
) -> None:
    """Remove a member from a channel."""
    if not _run(project, lambda m: m.remove_member(name, member)):
        raise _fail(f"{member!r} is not a member of #{name.removeprefix('#')}")
    _out().print(Text(f"Removed {member} from #{name.removeprefix('#')}."), highlight=False)


@channel_app.command("post")
def channel_post(
    name: Annotated[str, typer.Argument(help="The channel.")],
    body: Annotated[str, typer.Argument(help="The message.")],
    subject: Annotated[str, typer.Option("--subject", "-s")] = "",
    sender: FromOption = DEFAULT_PERSON,
    project: ProjectOption = Path("."),
) -> None:
    """Post to a channel (as a member)."""
    sent = _run(project, lambda m: m.post(sender, name, body, subject))
    _out().print(f"Posted [bold]{sent.id}[/] to #{escape(name.removeprefix('#'))} "
                 f"({sent.delivered_to} agents).", highlight=False)


@channel_app.command("history")
def channel_history(
    name: Annotated[str, typer.Argument(help="The channel.")],
    limit: Annotated[int, typer.Option(help="Show at most this many (newest).")] = 50,
    reader: Annotated[str | None, typer.Option(
        "--as", help="Read as this member: checks membership and moves its read "
        "cursor.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """A channel's posts, oldest first."""
    async def read(mailbox: Mailbox) -> tuple[list[Mail], int | None]:
        unread = await mailbox.store.unread_count(name.removeprefix("#"), reader) \
            if reader else None
        posts = await mailbox.history(reader, name, limit)
        if reader is not None:
            await mailbox.mark_read(name, reader)
        return posts, unread

    posts, unread = _run(project, read)
    out = _out()
    channel = name.removeprefix("#")
    header = f"#{channel}: {len(posts)} post{'s' if len(posts) != 1 else ''}" + (
        f", {unread} unread" if unread else "")
    out.print(f"[bold]{escape(header)}[/]", highlight=False)
    for post in posts:
        subject = f"[bold]{escape(post.subject)}[/] " if post.subject else ""
        out.print(f"{_stamp(post.created_at)} {escape(post.sender)}: {subject}"
                  f"{escape(post.body)}", highlight=False, soft_wrap=True)


@channel_app.command("list")
def channel_list(project: ProjectOption = Path(".")) -> None:
    """Every channel and its members."""
    async def channels(mailbox: Mailbox) -> list[Any]:
        return mailbox.channels()

    found = _run(project, channels)
    table = Table(title=f"Channels ({len(found)})", title_justify="left")
    for column in ("channel", "members", "topic"):
        table.add_column(column)
    for c in found:
        table.add_row(_cell(f"#{c.name}"), _cell(", ".join(c.members) or "-"),
                      _cell(c.topic or "-"))
    _out().print(table)
