"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mail_fixtures import AGENTS, OpenMailbox
from wakeful.mailbox import Mailbox
from wakeful.observe.events import EventLog
from wakeful.project.definitions import MailboxConfig
from wakeful.store.sqlite import SQLiteStore
from wakeful.store.sqlite_mail import SQLiteMailStore


@pytest.fixture
async def open_mailbox(tmp_path: Path) -> AsyncIterator[OpenMailbox]:
    """Open mailboxes on one SQLite file (several = several processes); closes them all."""
    opened: list[tuple[Mailbox, SQLiteStore]] = []

    async def make(live: bool = True, poll_interval_s: float = 0.05, **config: Any) -> Mailbox:
        store = SQLiteStore(tmp_path / "wakeful.db")
        await store.open()
        mailbox = Mailbox(SQLiteMailStore(store), MailboxConfig(**config),
                          events=EventLog(store), agents=lambda: AGENTS, live=live,
                          poll_interval_s=poll_interval_s)
        await mailbox.open()
        opened.append((mailbox, store))
        return mailbox

    yield make
    for mailbox, store in reversed(opened):
        await mailbox.close()
        await store.close()
