"""The mailbox's tables in the SQLite store.

A batch of mailbox changes is one ``store.write`` op, so it commits in the store's
next group commit together with whatever else is queued (task steps, events). Inside
the op, runs of like changes use ``executemany``: a burst of a thousand sends costs a
few statements and one commit, not a thousand transactions. Mail with an idempotency
key is inserted one by one, because only then can SQLite say it was a duplicate.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from itertools import chain, groupby
from typing import Any

from wakeful.core.mail_records import (
    PENDING,
    Change,
    Channel,
    ChannelUpsert,
    CursorMove,
    Delegation,
    DelegationChange,
    Delivery,
    DeliveryState,
    Envelope,
    MemberChange,
    NewEvents,
    NewMail,
)
from wakeful.errors import ConflictError
from wakeful.store.mail import QUESTIONS_LIKE, MailStore, Wakeup
from wakeful.store.sqlite.rows import EVENT_INSERT, event_row
from wakeful.store.sqlite.store import SQLiteStore

_MAIL_COLUMNS = ("id, sender, recipient, subject, body, payload, priority, thread_id, "
                 "in_reply_to, reply_to, correlation_id, causation_id, idempotency_key, "
                 "created_at")
_INSERT_MAIL = f"INSERT INTO mail ({_MAIL_COLUMNS}) VALUES ({', '.join('?' * 14)})"
_INSERT_KEYED = _INSERT_MAIL + " ON CONFLICT DO NOTHING"
_SELECT_MAIL = f"SELECT seq, {_MAIL_COLUMNS} FROM mail"
# (the LIKE term is written out so that the planner can use the partial index on it)
_UNANSWERED = (f"WHERE m.recipient = ? AND m.payload LIKE '{QUESTIONS_LIKE}' AND m.seq > ? "
               "AND NOT EXISTS (SELECT 1 FROM mail r WHERE r.correlation_id = "
               "m.correlation_id AND r.in_reply_to = m.id)")
_M = ", ".join(f"m.{c.strip()}" for c in _MAIL_COLUMNS.split(","))
_SELECT_DELIVERY = (f"SELECT m.seq, {_M}, d.owner, d.status, d.attempts, d.delivered_at, "
                    "d.read_at, d.acked_at, d.lease_until, d.last_error, d.seq, d.holder "
                    "FROM mail_deliveries d JOIN mail m ON m.id = d.mail_id")
_INSERT_DELIVERY = ("INSERT INTO mail_deliveries (status, attempts, delivered_at, read_at, "
                    "acked_at, lease_until, last_error, holder, mail_id, owner) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_UPDATE_DELIVERY = ("UPDATE mail_deliveries SET status = ?, attempts = ?, delivered_at = ?, "
                    "read_at = ?, acked_at = ?, lease_until = ?, last_error = ?, holder = ? "
                    "WHERE mail_id = ? AND owner = ? AND status != 'acked'")
_INSERT_FRESH = "INSERT INTO mail_deliveries (mail_id, owner, status)"  # + VALUES
_INSERT_WAKEUP = "INSERT INTO mail_wakeups (kind, mail_id, owner, at) VALUES (?, ?, ?, ?)"
_EVENT_HEAD = EVENT_INSERT.split(" VALUES ")[0]
# Older SQLite allows 999 bound parameters per statement, newer 32766.
_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)
_CHUNK = 256


def _chunks(rows: Sequence[tuple[Any, ...]], width: int) -> Iterable[Sequence[tuple[Any, ...]]]:
    size = max(1, min(_CHUNK, _MAX_PARAMS // width))
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _values(count: int, width: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * count)


def _insert_many(conn: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert rows with multi-row VALUES: one statement per chunk, not one per row.

    Why: the writer thread gives up the GIL inside every statement it steps, and under
    load getting it back means waiting for the event loop's thread; fewer, larger
    statements mean fewer of those waits (``executemany`` steps once per row).
    """
    if not rows:
        return
    width = len(rows[0])
    for chunk in _chunks(rows, width):
        conn.execute(f"{head} VALUES {_values(len(chunk), width)}", list(chain(*chunk)))


_STATE_COLUMNS = ("status", "attempts", "delivered_at", "read_at", "acked_at", "lease_until",
                  "last_error", "holder")


def _update_states(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Write deliveries' states. An acknowledged delivery is final: a state written
    earlier but committed later (through another transaction: an ack commits with the
    task step that took the mail) never undoes it."""
    if not _UPDATE_FROM:
        conn.executemany(_UPDATE_DELIVERY, rows)
        return
    assignments = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(_STATE_COLUMNS, 1))
    for chunk in _chunks(rows, 10):
        conn.execute(f"UPDATE mail_deliveries SET {assignments} FROM (VALUES "
                     f"{_values(len(chunk), 10)}) AS v WHERE mail_deliveries.mail_id = "
                     "v.column9 AND mail_deliveries.owner = v.column10 AND "
                     "mail_deliveries.status != 'acked'", list(chain(*chunk)))


def _mail_row(m: Envelope) -> tuple[Any, ...]:
    return (m.id, m.sender, m.recipient, m.subject, m.body, m.payload_json, m.priority,
            m.thread_id, m.in_reply_to, m.reply_to, m.correlation_id, m.causation_id,
            m.idempotency_key, m.created_at)


def _envelope(row: Sequence[Any]) -> Envelope:
    payload = row[6]
    return Envelope(id=row[1], sender=row[2], recipient=row[3], subject=row[4], body=row[5],
                    payload=json.loads(payload) if payload is not None else None,
                    priority=row[7], thread_id=row[8], in_reply_to=row[9], reply_to=row[10],
                    correlation_id=row[11], causation_id=row[12], idempotency_key=row[13],
                    created_at=row[14], seq=row[0], payload_json=payload)


def _delivery(row: Sequence[Any]) -> Delivery:
    mail = _envelope(row)
    return Delivery(mail=mail, owner=row[15], status=row[16], attempts=row[17],
                    delivered_at=row[18], read_at=row[19], acked_at=row[20],
                    lease_until=row[21], last_error=row[22], order=row[23], holder=row[24],
                    channel=mail.recipient[1:] if mail.recipient.startswith("#") else None)


def _apply_new_mail(conn: sqlite3.Connection, group: list[NewMail]) -> None:
    now = time.time()
    plain = [c for c in group if c.mail.idempotency_key is None]
    _insert_many(conn, _INSERT_MAIL.split(" VALUES ")[0], [_mail_row(c.mail) for c in plain])
    kept: list[NewMail] = plain
    for change in group:
        if change.mail.idempotency_key is None:
            continue
        if conn.execute(_INSERT_KEYED, _mail_row(change.mail)).rowcount == 1:
            kept.append(change)
            continue
        row = conn.execute(_SELECT_MAIL + " WHERE sender = ? AND idempotency_key = ?",
                           (change.mail.sender, change.mail.idempotency_key)).fetchone()
        change.duplicate_of = _envelope(row)
    # A new delivery is pending and never tried (every other column holds its default):
    # then only its key and status are bound. A post to a 100-member channel is 99 rows,
    # and binding 10 values a row instead of 3 cost a third of inserting them.
    deliveries = [d for c in kept for d in c.deliveries]
    if all(d.status == PENDING and not d.attempts and d.holder is None
           and d.delivered_at is None and d.read_at is None and d.acked_at is None
           and d.lease_until is None and d.last_error is None for d in deliveries):
        _insert_many(conn, _INSERT_FRESH, [(d.mail.id, d.owner, PENDING) for d in deliveries])
    else:  # (rows keep their order: seq is the order they are delivered in)
        _insert_many(conn, _INSERT_DELIVERY.split(" VALUES ")[0],
                     [d.state_row() for d in deliveries])
    _insert_many(conn, _INSERT_WAKEUP.split(" VALUES ")[0],
                 [("delivery", d.mail.id, d.owner, now) for c in kept if c.wakeup
                  for d in c.deliveries])
    _insert_many(conn, _EVENT_HEAD, [event_row(e) for c in kept for e in c.events])


def _apply_group(conn: sqlite3.Connection, kind: type, group: list[Any]) -> None:
    if kind is NewMail:
        _apply_new_mail(conn, group)
    elif kind is DeliveryState:
        _update_states(conn, [c.row for c in group])
        _insert_many(conn, _INSERT_WAKEUP.split(" VALUES ")[0],
                     [("delivery", c.row[-2], c.row[-1], time.time()) for c in group
                      if c.wakeup])
    elif kind is NewEvents:
        _insert_many(conn, _EVENT_HEAD, [event_row(e) for c in group for e in c.events])
    elif kind is ChannelUpsert:
        for c in group:
            conn.execute("INSERT INTO mail_channels (name, topic, created_at, created_by) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET topic = CASE "
                         "WHEN excluded.topic = '' THEN topic ELSE excluded.topic END",
                         (c.channel, c.topic, c.created_at, c.created_by))
            if c.wakeup:
                conn.execute(_INSERT_WAKEUP, ("channels", None, None, time.time()))
    elif kind is MemberChange:
        for c in group:
            if c.added:
                conn.execute("INSERT INTO mail_channel_members (channel, member, added_at) "
                             "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                             (c.channel, c.member, c.at))
            else:
                conn.execute("DELETE FROM mail_channel_members WHERE channel = ? AND "
                             "member = ?", (c.channel, c.member))
            if c.wakeup:
                conn.execute(_INSERT_WAKEUP, ("channels", None, None, time.time()))
    elif kind is CursorMove:
        for c in group:
            target = ("(SELECT seq FROM mail WHERE id = ?)" if c.mail_id is not None else
                      "(SELECT MAX(seq) FROM mail WHERE recipient = ?)")
            conn.execute(f"UPDATE mail_channel_members SET read_seq = MAX(read_seq, "
                         f"COALESCE({target}, 0)) WHERE channel = ? AND member = ?",
                         (c.mail_id if c.mail_id is not None else "#" + c.channel,
                          c.channel, c.member))
    elif kind is DelegationChange:
        for c in group:
            d = c.delegation
            verb = "INSERT" if c.new else "INSERT OR REPLACE"
            tail = " ON CONFLICT DO NOTHING" if c.new else ""
            cursor = conn.execute(
                f"{verb} INTO mail_delegations (task_id, agent, delegator, reply_to, "
                f"correlation_id, key, created_at, reported_at) VALUES (?, ?, ?, ?, ?, ?, "
                f"?, ?){tail}", (d.task_id, d.agent, d.delegator, d.reply_to,
                                 d.correlation_id, d.key, d.created_at, d.reported_at))
            if c.new and cursor.rowcount == 0:
                raise ConflictError(f"{d.delegator} already delegated under key {d.key!r}")


def apply_changes(conn: sqlite3.Connection, changes: Sequence[Change]) -> None:
    """Apply mailbox changes inside the caller's transaction, in order."""
    for kind, group in groupby(changes, key=type):
        _apply_group(conn, kind, list(group))


class SQLiteMailStore(MailStore):
    durable = True

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def apply(self, changes: Sequence[Change]) -> None:
        await self.store.write(lambda conn: apply_changes(conn, changes))

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        rows: list[Any] = await self.store.read(lambda c: c.execute(sql, params).fetchall())
        return rows

    async def load_open(self, agent: str | None = None) -> list[Delivery]:
        where = ""
        params: list[Any] = []
        if agent is not None:
            where = " AND (d.owner = ? OR d.owner LIKE ? ESCAPE '\\')"
            params = [agent, agent.replace("_", "\\_").replace("%", "\\%") + "/%"]
        rows = await self._rows(_SELECT_DELIVERY + " WHERE d.status IN ('pending', "
                                f"'delivered'){where} ORDER BY d.seq", params)
        return [_delivery(r) for r in rows]

    async def get_delegation(self, task_id: str) -> Delegation | None:
        rows = await self._rows("SELECT task_id, agent, delegator, reply_to, correlation_id, "
                                "key, created_at, reported_at FROM mail_delegations "
                                "WHERE task_id = ?", (task_id,))
        return Delegation(*rows[0]) if rows else None

    async def load_deliveries(self, keys: Iterable[tuple[str, str]]) -> list[Delivery]:
        found: list[Delivery] = []
        for mail_id, owner in keys:
            rows = await self._rows(_SELECT_DELIVERY + " WHERE d.mail_id = ? AND d.owner = ?",
                                    (mail_id, owner))
            found.extend(_delivery(r) for r in rows)
        return found

    async def load_channels(self) -> dict[str, Channel]:
        channels = {r[0]: Channel(r[0], {}, r[1], r[2], r[3]) for r in await self._rows(
            "SELECT name, topic, created_at, created_by FROM mail_channels")}
        for channel, member, added_at in await self._rows(
                "SELECT channel, member, added_at FROM mail_channel_members "
                "ORDER BY added_at"):
            if channel in channels:
                channels[channel].members[member] = added_at
        return channels

    async def load_delegations(self, unreported_only: bool = True) -> list[Delegation]:
        where = " WHERE reported_at IS NULL" if unreported_only else ""
        rows = await self._rows("SELECT task_id, agent, delegator, reply_to, correlation_id, "
                                "key, created_at, reported_at FROM mail_delegations" + where)
        return [Delegation(*r) for r in rows]

    async def take_wakeups(self, after: int) -> tuple[int, list[Wakeup]]:
        rows = await self._rows("SELECT seq, kind, mail_id, owner FROM mail_wakeups "
                                "WHERE seq > ? ORDER BY seq", (after,))
        if not rows:
            return after, []
        # Not deleted: every worker reads them (each from its own watermark); the
        # workers' heartbeat prunes rows older than an hour.
        return rows[-1][0], [(r[1], r[2], r[3]) for r in rows]

    async def get_mail(self, mail_id: str) -> Envelope | None:
        rows = await self._rows(_SELECT_MAIL + " WHERE id = ?", (mail_id,))
        return _envelope(rows[0]) if rows else None

    async def find_mail(self, sender: str, idempotency_key: str) -> Envelope | None:
        rows = await self._rows(_SELECT_MAIL + " WHERE sender = ? AND idempotency_key = ?",
                                (sender, idempotency_key))
        return _envelope(rows[0]) if rows else None

    async def deliveries_of(self, mail_id: str) -> list[Delivery]:
        rows = await self._rows(_SELECT_DELIVERY + " WHERE d.mail_id = ? ORDER BY d.seq",
                                (mail_id,))
        return [_delivery(r) for r in rows]

    async def list_deliveries(self, *, owner: str | None = None, status: str | None = None,
                              sender: str | None = None, limit: int = 100,
                              after: tuple[int, str] | None = None) -> list[Delivery]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("d.owner", owner), ("d.status", status), ("m.sender", sender)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if after is not None:  # paging forwards, in (seq, owner) order
            clauses.append("(m.seq, d.owner) > (?, ?)")
            params.extend(after)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        order = "d.seq DESC" if after is None else "m.seq, d.owner"
        rows = await self._rows(f"{_SELECT_DELIVERY}{where} ORDER BY {order} "
                                f"LIMIT {int(limit)}", params)
        return [_delivery(r) for r in (reversed(rows) if after is None else rows)]

    async def list_mail(self, *, recipient: str | None = None, sender: str | None = None,
                        thread_id: str | None = None, correlation_id: str | None = None,
                        between: tuple[str, str] | None = None,
                        before_seq: int | None = None, after_seq: int | None = None,
                        limit: int = 100) -> list[Envelope]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("recipient", recipient), ("sender", sender),
                              ("thread_id", thread_id), ("correlation_id", correlation_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if between is not None:  # an address also matches its tasks (agent/...)
            def side(column: str, who: str) -> str:
                params.extend([who, who.replace("\\", "\\\\").replace("%", "\\%")
                               .replace("_", "\\_") + "/%"])
                return f"({column} = ? OR {column} LIKE ? ESCAPE '\\')"
            a, b = between
            forth = f"({side('sender', a)} AND {side('recipient', b)})"
            back = f"({side('sender', b)} AND {side('recipient', a)})"
            clauses.append(f"({forth} OR {back})")
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        if after_seq is not None:
            clauses.append("seq > ?")
            params.append(after_seq)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        order = "ASC" if after_seq is not None else "DESC"
        rows = await self._rows(f"{_SELECT_MAIL}{where} ORDER BY seq {order} "
                                f"LIMIT {int(limit)}", params)
        return [_envelope(r) for r in (rows if after_seq is not None else reversed(rows))]

    async def unanswered_questions(self, recipient: str, *, after_seq: int = 0,
                                   limit: int = 100) -> list[Envelope]:
        rows = await self._rows(f"{_SELECT_MAIL} m {_UNANSWERED} ORDER BY seq LIMIT "
                                f"{int(limit)}", (recipient, after_seq))
        return [_envelope(r) for r in rows]

    async def read_cursors(self, member: str) -> dict[str, tuple[int, int]]:
        rows = await self._rows(
            "SELECT c.channel, c.read_seq, (SELECT MAX(seq) FROM mail WHERE recipient = "
            "'#' || c.channel) FROM mail_channel_members c WHERE c.member = ?", (member,))
        return {r[0]: (r[1], r[2] or 0) for r in rows}

    async def unread_count(self, channel: str, member: str) -> int:
        rows = await self._rows(
            "SELECT COUNT(*) FROM mail WHERE recipient = ? AND seq > COALESCE((SELECT read_seq "
            "FROM mail_channel_members WHERE channel = ? AND member = ?), 0) AND sender != ? "
            "AND sender NOT LIKE ? ESCAPE '\\'",
            ("#" + channel, channel, member, member,
             member.replace("_", "\\_").replace("%", "\\%") + "/%"))
        return int(rows[0][0])
