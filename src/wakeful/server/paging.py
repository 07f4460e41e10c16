"""Cursor pagination, the same on every list: ``after`` (a cursor), ``limit``, ``next``.

A page holds the items after the cursor, oldest first, and ``next`` is the cursor of
its last item when more follow (``null`` otherwise): a client walks a list by passing
each ``next`` back as ``after`` until it is null. ``after=`` (empty) starts at the
first item. Without ``after`` a list answers as it always has (most show the newest
``limit``). Cursors are keys (a task id, an event id, a mail seq, a name), so a page
is stable while items are added; a list made of several lists (an agent's inbox and
sent mail, a person's inbox) has one opaque cursor holding one key per list.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query

from wakeful.core.mail import Mail
from wakeful.core.mail_records import Envelope
from wakeful.errors import WakefulError
from wakeful.mailbox import Mailbox
from wakeful.server.errors import NotFound
from wakeful.store.mail import MailStore

T = TypeVar("T")

After = Annotated[str | None, Query(max_length=400, description=(
    "a cursor: the `next` of the page before (items after it, oldest first); "
    "empty: from the first item"))]
SeqAfter = Annotated[int | None, Query(ge=0, description=(
    "a cursor: the `next` of the page before (items after it, oldest first); "
    "0: from the first item"))]


def after_key(items: Sequence[T], key: Callable[[T], str], after: str | None, limit: int,
              *, what: str, tail: bool = False) -> tuple[list[T], str | None]:
    """A page of ``items`` (in list order) after the item whose key is ``after``.

    No ``after``: the first ``limit`` items, or with ``tail`` the last ``limit`` (and
    no ``next``: nothing follows the newest). An unknown key is a 404 naming it."""
    if after is None and tail:
        return list(items[-limit:]), None
    start = 0
    if after:
        keys = [key(item) for item in items]
        if after not in keys:
            raise NotFound(f"query.after: no {what} {after!r} in this list")
        start = keys.index(after) + 1
    page = list(items[start:start + limit])
    more = start + limit < len(items)
    return page, key(page[-1]) if more and page else None


def after_number(items: Sequence[T], key: Callable[[T], int], after: int | None,
                 limit: int, *, tail: bool = True) -> tuple[list[T], int | None]:
    """As :func:`after_key` for items ordered by a number (a seq, an id): the items
    whose number is above ``after``; a number that is gone is no error."""
    if after is None and tail:
        return list(items[-limit:]), None
    later = [item for item in items if key(item) > (after or 0)]
    page = later[:limit]
    return page, key(page[-1]) if len(later) > limit and page else None


async def mail_after(store: MailStore, after: int, limit: int, **where: Any
                     ) -> tuple[list[Envelope], int | None]:
    """The ``limit`` oldest mails matching ``where`` with a seq above ``after`` (one
    ascending read), and the cursor of the next page if more follow."""
    found = await store.list_mail(after_seq=after, limit=limit + 1, **where)
    return found[:limit], (found[limit - 1].seq if len(found) > limit else None)


async def deliveries_after(mailbox: Mailbox, after: tuple[int, str], limit: int, **where: Any
                           ) -> tuple[list[Mail], tuple[int, str] | None]:
    """As :func:`mail_after` for deliveries, which are placed by (mail seq, owner): a
    mail has one delivery per mailbox it went to."""
    found = await mailbox.list_mail(after=after, limit=limit + 1, **where)
    page = found[:limit]
    return page, ((page[-1].seq or 0, page[-1].owner or "") if len(found) > limit else None)


def encode(parts: dict[str, Any]) -> str:
    """An opaque cursor holding one key per list of a page made of several lists."""
    text = json.dumps(parts, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str | None) -> dict[str, Any]:
    """The keys in a cursor :func:`encode` made; a cursor that is not one is a 4xx."""
    if not cursor:
        return {}
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, ValueError, UnicodeError):
        parts = None
    if not isinstance(parts, dict):
        raise WakefulError(f"query.after: {cursor[:40]!r} is not a cursor this list gave "
                           "(pass the `next` of a page)")
    return parts
