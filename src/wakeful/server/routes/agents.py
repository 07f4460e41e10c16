"""Agents: live status, one agent's whole page, and the controls a person has."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.core.mail import Mail
from wakeful.observe.inspect import why_agent
from wakeful.server import views
from wakeful.server.identity import CallerDep
from wakeful.server.paging import (
    After,
    SeqAfter,
    after_key,
    decode,
    deliveries_after,
    encode,
    mail_after,
)
from wakeful.server.responses import (
    AgentControlled,
    AgentDetail,
    AgentMailPage,
    AgentsPage,
    EventsPage,
)
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.server.schemas import ControlRequest, SleepRequest

router = APIRouter(prefix="/api/agents", tags=["agents"])


@router.get("", response_model=AgentsPage, summary="Every agent with its live state, in "
            "the order they were defined; page with `after` (an agent name) and `next`")
async def list_agents(runtime: RuntimeDep, limit: Limit = 1000, after: After = None
                      ) -> dict[str, Any]:
    page, more = after_key(list(runtime.agents.values()), lambda a: a.name, after, limit,
                           what="agent")
    return {"agents": [views.agent_summary(runtime, a) for a in page], "next": more}


@router.get("/{name}", response_model=AgentDetail,
            summary="One agent: state, why, definition, usage, locks, timers")
async def get_agent(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    runner = runtime.agent(name)
    why = await why_agent(runtime.store, runner.definition, runner.record)
    locks = (await runtime.resources.view()).to_dict()
    mine = {
        "held": [lock for lock in locks["locks"] if lock["agent"] == name],
        "waiting": [w for w in locks["waiting"] if w["agent"] == name],
        "operations": [o for o in locks["operations"] if o["agent"] == name],
    }
    return {
        **views.agent_summary(runtime, runner),
        "definition": views.agent_definition(runtime, runner),
        "why": {"blockers": [{"task_id": b.task_id, "what": b.what} for b in why.blockers],
                "running": why.running},
        "usage": await views.agent_usage(runtime, name),
        "locks": mine,
        "timers": views.timers(runtime, name),
        "channels": [c.name for c in runtime.mailbox.channels(name)],
    }


@router.get("/{name}/timeline", response_model=EventsPage,
            summary="The agent's events, newest last (the newest `limit`; with `after`, "
            "the events after that id)")
async def timeline(name: str, runtime: RuntimeDep, limit: Limit = 200,
                   after_id: int = Query(0, ge=0, description="as `after`"),
                   after: SeqAfter = None) -> dict[str, Any]:
    runtime.agent(name)
    await runtime.store.flush()
    start = after if after is not None else after_id
    events = await runtime.store.query_events(agent=name, after_id=start, limit=limit + 1,
                                              newest=after is None and after_id == 0)
    if after is None and after_id == 0:
        events, more = events[-limit:], None  # the newest: nothing follows them
    else:
        events, more = events[:limit], (events[limit - 1].id if len(events) > limit
                                         else None)
    return {"events": [views.event_view(e) for e in events], "next": more}


@router.get("/{name}/mail", response_model=AgentMailPage,
            summary="Mail the agent received and sent, newest last; with `after` (the "
            "`next` of a page) the mail after it in both lists")
async def agent_mail(name: str, runtime: RuntimeDep, limit: Limit = 50,
                     after: After = None) -> dict[str, Any]:
    runtime.agent(name)
    cursor = decode(after)
    pages: dict[str, tuple[list[Mail], int | None]]
    if after is None:  # the newest of each
        inbox = await runtime.mailbox.list_mail(owner=name, limit=limit)
        await runtime.mailbox.flush()
        sent = await runtime.mailbox.store.list_mail(sender=name, limit=limit)
        pages = {"inbox": (inbox, None), "sent": ([m.view() for m in sent], None)}
    else:  # each list from where it stood, one ascending read each, to its very end
        inbox, placed = await deliveries_after(runtime.mailbox,
                                               (_int(cursor.get("inbox")), name), limit,
                                               owner=name)
        found, following = await mail_after(runtime.mailbox.store, _int(cursor.get("sent")),
                                            limit, sender=name)
        pages = {"inbox": (inbox, placed[0] if placed is not None else None),
                 "sent": ([m.view() for m in found], following)}
    more = None
    if any(following is not None for _, following in pages.values()):
        # each list resumes after its last mail shown (or where it stood, if it had none)
        more = encode({key: following if following is not None
                       else _seq(got[-1]) if got else _int(cursor.get(key))
                       for key, (got, following) in pages.items()})
    return {key: [views.mail_view(m) for m in got] for key, (got, _) in pages.items()} | {
        "next": more}


def _seq(mail: Mail) -> int:
    return mail.seq or 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _control(action: str, doc: str) -> None:
    async def endpoint(name: str, runtime: RuntimeDep, caller: CallerDep,
                       body: ControlRequest | None = None) -> dict[str, Any]:
        done = await runtime.control(action, name, by=caller.identity,
                                     reason=body.reason if body else "")
        return {**views.agent_summary(runtime, runtime.agent(name)),
                "control": done.to_dict()}

    endpoint.__name__ = f"{action}_agent"
    router.post(f"/{{name}}/{action}", summary=doc, response_model=AgentControlled)(endpoint)


_control("pause", "Pause: no task takes a new step until resumed")
_control("resume", "Resume a paused agent")
_control("wake", "Wake a sleeping agent now")
_control("stop", "Stop: running tasks go back to the queue and stay there")
_control("start", "Start a stopped or failed agent; its queued tasks resume")
_control("restart", "Stop (if needed) and start again")


@router.post("/{name}/sleep", response_model=AgentControlled,
             summary="Put an agent to sleep until woken")
async def sleep_agent(name: str, runtime: RuntimeDep, caller: CallerDep,
                      body: SleepRequest | None = None) -> dict[str, Any]:
    reason = body.reason if body is not None else SleepRequest().reason
    done = await runtime.control("sleep", name, by=caller.identity, reason=reason)
    return {**views.agent_summary(runtime, runtime.agent(name)), "control": done.to_dict()}
