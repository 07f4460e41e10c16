"""Search across mail, tasks and events, by words, agent, state, kind and time.

Each family is read through its store port (newest first, a bounded window of the
most recent records) and filtered here, so search works on every backend; a hit
links to what it is about (a task's trace, a mail's conversation).
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wakeful.core.states import TaskState
from wakeful.runtime.runtime import Runtime
from wakeful.server.paging import After, decode, encode
from wakeful.server.routes.deps import RuntimeDep

router = APIRouter(prefix="/api", tags=["search"])

Kind = Literal["tasks", "mail", "events"]
WINDOW = 5000  # the most recent records of each family that a search reads
SNIPPET = 240


class Hit(BaseModel):
    kind: Kind
    id: str
    agent: str | None
    ts: float
    title: str
    text: str
    state: str | None = None
    task_id: str | None = None


class SearchResult(BaseModel):
    query: str
    hits: list[Hit]
    truncated: bool = Field(description="more hits than this page holds")
    next: str | None = Field(None, description=(
        "the cursor of the following page (pass it as `after`); null: no more hits"))


def _snippet(text: str, words: str) -> str:
    if not words:
        return text[:SNIPPET]
    at = text.lower().find(words)
    start = max(0, at - 60)
    return ("…" if start else "") + text[start:start + SNIPPET]


def _in_time(ts: float, since: float | None, until: float | None) -> bool:
    return (since is None or ts >= since) and (until is None or ts <= until)


async def _tasks(runtime: Runtime, words: str, agent: str | None, state: TaskState | None,
                 since: float | None, until: float | None) -> list[Hit]:
    records = await runtime.store.list_tasks(agent=agent, states=[state] if state else None)
    hits = []
    for t in records[-WINDOW:]:
        text = "\n".join(x for x in (t.instruction, t.result or "", t.error or "") if x)
        if words in text.lower() and _in_time(t.created_at, since, until):
            hits.append(Hit(kind="tasks", id=t.id, agent=t.agent, ts=t.created_at,
                            title=t.instruction[:120], text=_snippet(text, words),
                            state=t.state.value, task_id=t.id))
    return hits


async def _mail(runtime: Runtime, words: str, agent: str | None, since: float | None,
                until: float | None) -> list[Hit]:
    await runtime.mailbox.flush()
    found = await runtime.mailbox.store.list_mail(limit=WINDOW)
    hits = []
    for m in found:
        who = {m.sender.split("/")[0], m.recipient.split("/")[0]}
        text = f"{m.subject}\n{m.body}".strip()
        if agent is not None and agent not in who:
            continue
        if words in text.lower() and _in_time(m.created_at, since, until):
            task_id = (m.payload or {}).get("task_id") if isinstance(m.payload, dict) else None
            hits.append(Hit(kind="mail", id=m.id, agent=m.sender.split("/")[0], ts=m.created_at,
                            title=f"{m.sender} → {m.recipient}", text=_snippet(text, words),
                            task_id=task_id if isinstance(task_id, str) else None))
    return hits


async def _events(runtime: Runtime, words: str, agent: str | None, type_prefix: str | None,
                  since: float | None, until: float | None) -> list[Hit]:
    await runtime.store.flush()
    found = await runtime.store.query_events(agent=agent, type_prefix=type_prefix,
                                             newest=True, limit=WINDOW)
    hits = []
    for e in found:
        text = json.dumps(e.data, default=str)
        if (words in text.lower() or words in e.type) and _in_time(e.ts, since, until):
            hits.append(Hit(kind="events", id=str(e.id), agent=e.agent, ts=e.ts, title=e.type,
                            text=_snippet(text, words), task_id=e.task_id))
    return hits


@router.get("/search", response_model=SearchResult,
            summary="Search mail, tasks and events by words, agent, state, kind and time")
async def search(runtime: RuntimeDep,
                 q: Annotated[str, Query(max_length=200, description="words to find")] = "",
                 kind: Kind | None = None, agent: str | None = None,
                 state: Annotated[TaskState | None, Query(description="tasks only")] = None,
                 type_prefix: Annotated[str | None, Query(max_length=64,
                                                          description="events only")] = None,
                 since: float | None = None, until: float | None = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 after: After = None) -> SearchResult:
    if agent is not None:
        runtime.agent(agent)  # an unknown agent is a 404 naming it
    words = q.strip().lower()
    hits: list[Hit] = []
    if kind in (None, "tasks"):
        hits += await _tasks(runtime, words, agent, state, since, until)
    if kind in (None, "mail") and state is None:
        hits += await _mail(runtime, words, agent, since, until)
    if kind in (None, "events") and state is None:
        hits += await _events(runtime, words, agent, type_prefix, since, until)
    hits.sort(key=_order, reverse=True)  # newest first
    at = decode(after).get("hit")
    if isinstance(at, list) and len(at) == 3:  # the hits after this one, in that order
        position = (float(at[0]) if isinstance(at[0], int | float) else 0.0, str(at[1]),
                    str(at[2]))
        hits = [h for h in hits if _order(h) < position]
    more = len(hits) > limit
    page = hits[:limit]
    return SearchResult(query=q, hits=page, truncated=more,
                        next=encode({"hit": list(_order(page[-1]))}) if more else None)


def _order(hit: Hit) -> tuple[float, str, str]:
    return (hit.ts, hit.kind, hit.id)
