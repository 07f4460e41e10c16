"""Agents: live status, one agent's whole page, and the controls a person has."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from wakeful.observe.inspect import why_agent
from wakeful.server import views
from wakeful.server.identity import CallerDep
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.server.schemas import ControlRequest, SleepRequest

router = APIRouter(prefix="/api/agents", tags=["agents"])


@router.get("", summary="Every agent with its live state")
async def list_agents(runtime: RuntimeDep) -> dict[str, Any]:
    return {"agents": [views.agent_summary(runtime, a) for a in runtime.agents.values()]}


@router.get("/{name}", summary="One agent: state, why, definition, usage, locks, timers")
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


@router.get("/{name}/timeline", summary="The agent's events, newest last")
async def timeline(name: str, runtime: RuntimeDep, limit: Limit = 200,
                   after_id: int = 0) -> dict[str, Any]:
    runtime.agent(name)
    await runtime.store.flush()
    events = await runtime.store.query_events(agent=name, after_id=after_id, limit=limit,
                                              newest=after_id == 0)
    return {"events": [views.event_view(e) for e in events]}


@router.get("/{name}/mail", summary="Mail the agent received and sent, newest last")
async def agent_mail(name: str, runtime: RuntimeDep, limit: Limit = 50) -> dict[str, Any]:
    runtime.agent(name)
    inbox = await runtime.mailbox.list_mail(owner=name, limit=limit)
    await runtime.mailbox.flush()
    sent = await runtime.mailbox.store.list_mail(sender=name, limit=limit)
    return {"inbox": [views.mail_view(m) for m in inbox],
            "sent": [views.mail_view(m.view()) for m in sent]}


def _control(action: str, doc: str) -> None:
    async def endpoint(name: str, runtime: RuntimeDep, caller: CallerDep,
                       body: ControlRequest | None = None) -> dict[str, Any]:
        done = await runtime.control(action, name, by=caller.identity,
                                     reason=body.reason if body else "")
        return {**views.agent_summary(runtime, runtime.agent(name)),
                "control": done.to_dict()}

    endpoint.__name__ = f"{action}_agent"
    router.post(f"/{{name}}/{action}", summary=doc)(endpoint)


_control("pause", "Pause: no task takes a new step until resumed")
_control("resume", "Resume a paused agent")
_control("wake", "Wake a sleeping agent now")
_control("stop", "Stop: running tasks go back to the queue and stay there")
_control("start", "Start a stopped or failed agent; its queued tasks resume")
_control("restart", "Stop (if needed) and start again")


@router.post("/{name}/sleep", summary="Put an agent to sleep until woken")
async def sleep_agent(name: str, runtime: RuntimeDep, caller: CallerDep,
                      body: SleepRequest | None = None) -> dict[str, Any]:
    reason = body.reason if body is not None else SleepRequest().reason
    done = await runtime.control("sleep", name, by=caller.identity, reason=reason)
    return {**views.agent_summary(runtime, runtime.agent(name)), "control": done.to_dict()}
