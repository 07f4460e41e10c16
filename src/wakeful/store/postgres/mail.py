"""The mailbox's tables in the PostgreSQL store (a port of the SQLite family).

A batch of mailbox changes is one ``store.write`` op, so it commits in the store's next
group commit together with whatever else is queued. Inside the op, runs of like changes
are one statement each, rows passed as arrays through ``unnest``: a burst of a thousand
sends is a handful of statements and one commit. Mail with an idempotency key goes in
with ``ON CONFLICT DO NOTHING RETURNING id``, which says which ones were duplicates.

Positions a reader follows are commit-ordered (see
:mod:`wakeful.store.postgres.schema`): :meth:`PgMailStore.take_wakeups` reads only
wakeups below the read horizon, so one written by a transaction that commits late is
read on a later call instead of being skipped.

The op may run twice (the group commit replays a batch with a savepoint per write when
one write in it failed), so whatever it sets on the change records is set afresh.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import TYPE_CHECKING, Any

import asyncpg

from wakeful.core.mail_records import (
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
from wakeful.store.postgres.inserts import columns, insert_events
from wakeful.store.postgres.schema import HORIZON, NOW
from wakeful.store.sqlite.mail import _delivery, _envelope
from wakeful.store.sqlite.mail import _mail_row as mail_row

if TYPE_CHECKING:
    from wakeful.store.postgres.store import PostgresStore

_MAIL_COLUMNS = ("id, sender, recipient, subject, body, payload, priority, thread_id, "
                 "in_reply_to, reply_to, correlation_id, causation_id, idempotency_key, "
                 "created_at")
_MAIL_TYPES = ("text", "text", "text", "text", "text", "text", "int", "text", "text",
               "text", "text", "text", "text", "float8")
_UNNEST_MAIL = "unnest(" + ", ".join(f"${i}::{t}[]" for i, t in
                                     enumerate(_MAIL_TYPES, 1)) + ")"
_INSERT_MAIL = f"INSERT INTO mail ({_MAIL_COLUMNS}) SELECT * FROM {_UNNEST_MAIL}"
_INSERT_KEYED = _INSERT_MAIL + " ON CONFLICT DO NOTHING RETURNING id"
_SELECT_MAIL = f"SELECT seq, {_MAIL_COLUMNS} FROM mail"
_M = ", ".join(f"m.{c.strip()}" for c in _MAIL_COLUMNS.split(","))
_SELECT_DELIVERY = (f"SELECT m.seq, {_M}, d.owner, d.status, d.attempts, d.delivered_at, "
                    "d.read_at, d.acked_at, d.lease_until, d.last_error, d.seq, d.holder "
                    "FROM mail_deliveries d JOIN mail m ON m.id = d.mail_id")
_STATE_COLUMNS = ("status", "attempts", "delivered_at", "read_at", "acked_at", "lease_until",
                  "last_error", "holder", "mail_id", "owner")
_STATE_TYPES = ("text", "int", "float8", "float8", "float8", "float8", "text", "text",
                "text", "text")
_UNNEST_STATES = "unnest(" + ", ".join(f"${i}::{t}[]" for i, t in
                                       enumerate(_STATE_TYPES, 1)) + ")"
_INSERT_DELIVERIES = (f"INSERT INTO mail_deliveries ({', '.join(_STATE_COLUMNS)}) "
                      f"SELECT * FROM {_UNNEST_STATES}")
# An acknowledged delivery is final: a state written earlier but committed later
# (through another transaction: an ack commits with the task step that took the
# mail) never undoes it.
_UPDATE_STATES = (
    "UPDATE mail_deliveries d SET " + ", ".join(f"{c} = v.{c}" for c in _STATE_COLUMNS[:8])
    + f" FROM {_UNNEST_STATES} AS v({', '.join(_STATE_COLUMNS)}) WHERE d.mail_id = "
    "v.mail_id AND d.owner = v.owner AND d.status != 'acked'")
_INSERT_WAKEUPS = (f"INSERT INTO mail_wakeups (kind, mail_id, owner, at) SELECT k, m, o, "
                   f"{NOW} FROM unnest($1::text[], $2::text[], $3::text[]) AS w(k, m, o)")
_DELEGATION_COLUMNS = ("task_id, agent, delegator, reply_to, correlation_id, key, "
                       "created_at, reported_at")


def envelope_from_row(row: Any) -> Envelope:
    """A mail from an asyncpg record (the SQLite family's conversion: same columns)."""
    return _envelope(row)


def delivery_from_row(row: Any) -> Delivery:
    return _delivery(row)


def _collapse(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One state per delivery, the one applying the rows in order would leave (a later
    state never replaces an ack): an UPDATE ... FROM applies only one source row per
    target row, so repeats must not reach it."""
    kept: dict[tuple[Any, Any], tuple[Any, ...]] = {}
    for row in rows:
        key = (row[-2], row[-1])
        earlier = kept.get(key)
        if earlier is None or earlier[0] != "acked":
            kept[key] = row
    return sorted(kept.values(), key=lambda r: (r[-2], r[-1]))  # one lock order for all


async def _wakeups(conn: asyncpg.Connection, rows: Sequence[tuple[str, str | None,
                                                                  str | None]]) -> None:
    if rows:
        await conn.execute(_INSERT_WAKEUPS, *columns(rows, 3))


async def _apply_new_mail(conn: asyncpg.Connection, group: list[NewMail]) -> None:
    plain = [c for c in group if c.mail.idempotency_key is None]
    keyed = [c for c in group if c.mail.idempotency_key is not None]
    if plain:
        await conn.execute(_INSERT_MAIL, *columns([mail_row(c.mail) for c in plain], 14))
    kept: list[NewMail] = list(plain)
    if keyed:
        inserted = Counter(r[0] for r in await conn.fetch(
            _INSERT_KEYED, *columns([mail_row(c.mail) for c in keyed], 14)))
        duplicates: list[NewMail] = []
        for change in keyed:
            change.duplicate_of = None
            if inserted[change.mail.id] > 0:
                inserted[change.mail.id] -= 1
                kept.append(change)
            else:
                duplicates.append(change)
        if duplicates:
            await _find_duplicates(conn, duplicates)
    await _insert_deliveries(conn, [d.state_row() for c in kept for d in c.deliveries])
    await _wakeups(conn, [("delivery", d.mail.id, d.owner) for c in kept if c.wakeup
                          for d in c.deliveries])
    await insert_events(conn, [e for c in kept for e in c.events])


async def _find_duplicates(conn: asyncpg.Connection, duplicates: list[NewMail]) -> None:
    """Set ``duplicate_of`` to the mail kept under the same sender and key."""
    rows = await conn.fetch(
        f"{_SELECT_MAIL} WHERE (sender, idempotency_key) IN (SELECT * FROM "
        "unnest($1::text[], $2::text[])) OR id = ANY($3::text[])",
        [c.mail.sender for c in duplicates], [c.mail.idempotency_key for c in duplicates],
        [c.mail.id for c in duplicates])
    found = [envelope_from_row(r) for r in rows]
    by_key = {(m.sender, m.idempotency_key): m for m in found}
    by_id = {m.id: m for m in found}
    for change in duplicates:
        change.duplicate_of = (by_key.get((change.mail.sender, change.mail.idempotency_key))
                               or by_id.get(change.mail.id))


async def _insert_deliveries(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        await conn.execute(_INSERT_DELIVERIES, *columns(rows, 10))


async def _apply_group(conn: asyncpg.Connection, kind: type, group: list[Any]) -> None:
    if kind is NewMail:
        await _apply_new_mail(conn, group)
    elif kind is DeliveryState:
        states = _collapse(c.row for c in group)
        await conn.execute(_UPDATE_STATES, *columns(states, 10))
        await _wakeups(conn, [("delivery", c.row[-2], c.row[-1]) for c in group if c.wakeup])
    elif kind is NewEvents:
        await insert_events(conn, [e for c in group for e in c.events])
    elif kind is ChannelUpsert:
        await conn.executemany(
            "INSERT INTO mail_channels (name, topic, created_at, created_by) VALUES ($1, $2, "
            "$3, $4) ON CONFLICT (name) DO UPDATE SET topic = CASE WHEN excluded.topic = '' "
            "THEN mail_channels.topic ELSE excluded.topic END",
            [(c.channel, c.topic, c.created_at, c.created_by) for c in group])
        await _wakeups(conn, [("channels", None, None) for c in group if c.wakeup][:1])
    elif kind is MemberChange:
        for c in group:
            if c.added:
                await conn.execute("INSERT INTO mail_channel_members (channel, member, "
                                   "added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                   c.channel, c.member, c.at)
            else:
                await conn.execute("DELETE FROM mail_channel_members WHERE channel = $1 AND "
                                   "member = $2", c.channel, c.member)
        await _wakeups(conn, [("channels", None, None) for c in group if c.wakeup][:1])
    elif kind is CursorMove:
        for c in group:
            # "Up to the latest post" is the latest committed, as in SQLite; not cut at
            # the read horizon, which any open transaction on the server holds back (the
            # cursor would then stop short of posts the member has seen).
            target = ("(SELECT seq FROM mail WHERE id = $1)" if c.mail_id is not None else
                      "(SELECT MAX(seq) FROM mail WHERE recipient = $1)")
            await conn.execute(
                f"UPDATE mail_channel_members SET read_seq = GREATEST(read_seq, COALESCE("
                f"{target}, 0)) WHERE channel = $2 AND member = $3",
                c.mail_id if c.mail_id is not None else "#" + c.channel, c.channel, c.member)
    elif kind is DelegationChange:
        for c in group:
            await _apply_delegation(conn, c)


async def _apply_delegation(conn: asyncpg.Connection, change: DelegationChange) -> None:
    d = change.delegation
    tail = (" ON CONFLICT DO NOTHING" if change.new else
            " ON CONFLICT (task_id) DO UPDATE SET " + ", ".join(
                f"{c} = excluded.{c}" for c in _DELEGATION_COLUMNS.split(", ")[1:]))
    status = await conn.execute(
        f"INSERT INTO mail_delegations ({_DELEGATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, "
        f"$6, $7, $8){tail}", d.task_id, d.agent, d.delegator, d.reply_to, d.correlation_id,
        d.key, d.created_at, d.reported_at)
    if change.new and status.endswith(" 0"):
        raise ConflictError(f"{d.delegator} already delegated under key {d.key!r}")


async def apply_changes(conn: asyncpg.Connection, changes: Sequence[Change]) -> None:
    """Apply mailbox changes inside the caller's transaction, in order."""
    for kind, group in groupby(changes, key=type):
        await _apply_group(conn, kind, list(group))


def rings(changes: Sequence[Change]) -> tuple[str, ...]:
    """The doorbells a batch rings: ``mail`` when it adds mail or a wakeup."""
    for change in changes:
        if isinstance(change, NewMail) or getattr(change, "wakeup", False):
            return ("mail",)
    return ()


class PgMailStore(MailStore):
    durable = True

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def apply(self, changes: Sequence[Change]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await apply_changes(conn, changes)

        await self.store.write(op, ring=rings(changes))

    async def load_open(self, agent: str | None = None) -> list[Delivery]:
        where = ""
        params: list[Any] = []
        if agent is not None:
            where = " AND (d.owner = $1 OR d.owner LIKE $2)"
            params = [agent, _like_prefix(agent) + "/%"]
        rows = await self.store.fetch(_SELECT_DELIVERY + " WHERE d.status IN ('pending', "
                                      f"'delivered'){where} ORDER BY d.seq", *params)
        return [delivery_from_row(r) for r in rows]

    async def get_delegation(self, task_id: str) -> Delegation | None:
        rows = await self.store.fetch(f"SELECT {_DELEGATION_COLUMNS} FROM mail_delegations "
                                      "WHERE task_id = $1", task_id)
        return Delegation(*rows[0]) if rows else None

    async def load_deliveries(self, keys: Iterable[tuple[str, str]]) -> list[Delivery]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        rows = await self.store.fetch(
            _SELECT_DELIVERY + " JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS "
            "k(mail_id, owner, n) ON d.mail_id = k.mail_id AND d.owner = k.owner ORDER BY k.n",
            [k[0] for k in wanted], [k[1] for k in wanted])
        return [delivery_from_row(r) for r in rows]

    async def load_channels(self) -> dict[str, Channel]:
        channels = {r[0]: Channel(r[0], {}, r[1], r[2], r[3]) for r in await self.store.fetch(
            "SELECT name, topic, created_at, created_by FROM mail_channels")}
        for channel, member, added_at in await self.store.fetch(
                "SELECT channel, member, added_at FROM mail_channel_members "
                "ORDER BY added_at"):
            if channel in channels:
                channels[channel].members[member] = added_at
        return channels

    async def load_delegations(self, unreported_only: bool = True) -> list[Delegation]:
        where = " WHERE reported_at IS NULL" if unreported_only else ""
        rows = await self.store.fetch(
            f"SELECT {_DELEGATION_COLUMNS} FROM mail_delegations" + where)
        return [Delegation(*r) for r in rows]

    async def take_wakeups(self, after: int) -> tuple[int, list[Wakeup]]:
        # Commit-ordered: wakeups of transactions still running (or younger than one
        # that is) are left for a later call, so following the watermark skips none.
        rows = await self.store.fetch(
            "SELECT seq, kind, mail_id, owner FROM mail_wakeups WHERE seq > $1 AND "
            f"seq < {HORIZON} ORDER BY seq", after)
        if not rows:
            return after, []
        # Not deleted: every worker reads them (each from its own watermark); the
        # workers' heartbeat prunes rows older than an hour.
        return int(rows[-1][0]), [(r[1], r[2], r[3]) for r in rows]

    async def get_mail(self, mail_id: str) -> Envelope | None:
        rows = await self.store.fetch(_SELECT_MAIL + " WHERE id = $1", mail_id)
        return envelope_from_row(rows[0]) if rows else None

    async def find_mail(self, sender: str, idempotency_key: str) -> Envelope | None:
        rows = await self.store.fetch(_SELECT_MAIL + " WHERE sender = $1 AND "
                                      "idempotency_key = $2", sender, idempotency_key)
        return envelope_from_row(rows[0]) if rows else None

    async def deliveries_of(self, mail_id: str) -> list[Delivery]:
        rows = await self.store.fetch(_SELECT_DELIVERY + " WHERE d.mail_id = $1 "
                                      "ORDER BY d.seq", mail_id)
        return [delivery_from_row(r) for r in rows]

    async def list_deliveries(self, *, owner: str | None = None, status: str | None = None,
                              sender: str | None = None, limit: int = 100,
                              after: tuple[int, str] | None = None) -> list[Delivery]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("d.owner", owner), ("d.status", status), ("m.sender", sender)):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        if after is not None:  # paging forwards: commit-ordered, no late row skipped
            params.extend(after)
            clauses.append(f"(m.seq, d.owner) > (${len(params) - 1}, ${len(params)}) "
                           f"AND m.seq < {HORIZON}")
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        order = "d.seq DESC" if after is None else "m.seq, d.owner"
        rows = await self.store.fetch(f"{_SELECT_DELIVERY}{where} ORDER BY {order} "
                                      f"LIMIT {int(limit)}", *params)
        return [delivery_from_row(r) for r in (reversed(rows) if after is None else rows)]

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
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        if between is not None:  # an address also matches its tasks (agent/...)
            def side(column: str, who: str) -> str:
                params.extend([who, _like_prefix(who) + "/%"])
                return f"({column} = ${len(params) - 1} OR {column} LIKE ${len(params)})"
            a, b = between
            forth = f"({side('sender', a)} AND {side('recipient', b)})"
            back = f"({side('sender', b)} AND {side('recipient', a)})"
            clauses.append(f"({forth} OR {back})")
        if before_seq is not None:
            params.append(before_seq)
            clauses.append(f"seq < ${len(params)}")
        if after_seq is not None:  # paging forwards: commit-ordered, no late row skipped
            params.append(after_seq)
            clauses.append(f"seq > ${len(params)} AND seq < {HORIZON}")
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        order = "ASC" if after_seq is not None else "DESC"
        rows = await self.store.fetch(f"{_SELECT_MAIL}{where} ORDER BY seq {order} "
                                      f"LIMIT {int(limit)}", *params)
        return [envelope_from_row(r) for r in (rows if after_seq is not None
                                               else reversed(rows))]

    async def unanswered_questions(self, recipient: str, *, after_seq: int = 0,
                                   limit: int = 100) -> list[Envelope]:
        rows = await self.store.fetch(
            f"{_SELECT_MAIL} m WHERE m.recipient = $1 AND m.payload LIKE "
            f"'{QUESTIONS_LIKE}' AND m.seq > $2 AND NOT EXISTS (SELECT 1 FROM mail r WHERE "
            "r.correlation_id = m.correlation_id AND r.in_reply_to = m.id) "
            f"ORDER BY seq LIMIT {int(limit)}", recipient, after_seq)
        return [envelope_from_row(r) for r in rows]

    async def read_cursors(self, member: str) -> dict[str, tuple[int, int]]:
        rows = await self.store.fetch(
            "SELECT c.channel, c.read_seq, (SELECT MAX(seq) FROM mail WHERE recipient = "
            "'#' || c.channel) FROM mail_channel_members c WHERE c.member = $1", member)
        return {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}

    async def unread_count(self, channel: str, member: str) -> int:
        rows = await self.store.fetch(
            "SELECT COUNT(*) FROM mail WHERE recipient = $1 AND seq > COALESCE((SELECT "
            "read_seq FROM mail_channel_members WHERE channel = $2 AND member = $3), 0) AND "
            "sender != $3 AND sender NOT LIKE $4",
            "#" + channel, channel, member, _like_prefix(member) + "/%")
        return int(rows[0][0])


def _like_prefix(text: str) -> str:
    """``text`` with LIKE's wildcards (and its escape, the backslash) escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
