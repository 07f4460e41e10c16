"""A monitor that intervenes: ``escalate`` acts on work that stays wrong.

A task flagged looping or stuck by ``after_checks`` checks in a row (``check_agents``
records what each check flagged as a ``monitor.checked`` event, so the count holds
across the monitor's tasks and restarts) is acted on: by default a looping task's
agent is paused and a stuck task is cancelled. The coordinator (``to``) and a channel
(``#alerts``) are told what was done and why, and the action is an ordinary control
action (``control.pause`` / ``control.cancel``, by the monitor's task), so a person
sees it on the agent's page and can undo it there. Each problem is acted on once: a
person who undoes it is not overruled by the next check.

The monitor needs ``can_control`` for the agents it may act on; without it the action
is refused and recorded like any other control tool call.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from wakeful.core.states import AgentState
from wakeful.errors import AccessDeniedError, WakefulError
from wakeful.toolkit.context import ToolContext, caller_address
from wakeful.toolkit.registry import Tool, tool

Remedy = Literal["pause", "cancel", "none"]
_PROBLEMS = "monitor:problems"  # what check_agents left in this task's scratch
CHECK_LOOKBACK = 50


async def _flagged_in_a_row(ctx: ToolContext, checks: int) -> set[tuple[str, str]]:
    """(kind, task) flagged by each of this monitor's last ``checks`` checks."""
    found = await ctx.team.events(agent=ctx.agent, types=["monitor.checked"], newest=True,
                                  limit=checks)
    if len(found) < checks:
        return set()
    sets = [{(str(f.get("kind")), str(f.get("task"))) for f in e.data.get("flagged", [])}
            for e in found]
    return set.intersection(*sets)


async def _acted_on(ctx: ToolContext, agent: str) -> set[str]:
    """Problem keys this monitor's escalations acted on before, for ``agent``."""
    events = await ctx.team.events(agent=agent, type_prefix="control.", newest=True,
                                   limit=CHECK_LOOKBACK * 20)
    return {str(e.data["problem"]) for e in events if e.data.get("problem")}


@tool
async def escalate(
    ctx: ToolContext,
    after_checks: Annotated[int, Field(ge=1, le=CHECK_LOOKBACK, description=(
        "act on a problem flagged by this many checks in a row"))] = 2,
    looping: Annotated[Remedy, Field(description="what to do with a looping task: pause "
                                     "its agent, cancel it, or nothing")] = "pause",
    stuck: Annotated[Remedy, Field(description="what to do with a stuck task")] = "cancel",
    to: Annotated[str | None, Field(description="who to tell (an agent or a person)")
                  ] = "coordinator",
    channel: Annotated[str | None, Field(description="a channel to tell too")] = "alerts",
) -> dict[str, Any]:
    """Act on tasks your last check_agents found looping or stuck in several checks in
    a row: pause their agent or cancel them, and tell ``to`` and ``channel`` why. A
    person can undo it from the agent's page."""
    if _PROBLEMS not in ctx.scratch:
        raise WakefulError("no check to act on: call check_agents first")
    repeated = await _flagged_in_a_row(ctx, after_checks)
    done: list[dict[str, Any]] = []
    refused: list[str] = []
    for problem in ctx.scratch[_PROBLEMS]:
        kind, task_id, agent = problem["kind"], problem["task_id"], problem["agent"]
        remedy: Remedy = looping if kind == "looping" else stuck if kind == "stuck" else "none"
        if remedy == "none" or task_id is None or (kind, task_id) not in repeated:
            continue
        if problem["key"] in await _acted_on(ctx, agent):
            continue
        outcome = await _remedy(ctx, remedy, agent, task_id, problem, after_checks, refused)
        if outcome is None:
            continue
        done.append(outcome)
        await _tell(ctx, outcome, problem, to, channel)
    summary = (f"{len(done)} interventions: " + "; ".join(d["what"] for d in done)
               if done else "nothing to act on")
    if refused:
        summary += f"; refused: {'; '.join(refused)}"
    return {"acted": done, "refused": refused, "summary": summary}


async def _remedy(ctx: ToolContext, remedy: Remedy, agent: str, task_id: str,
                  problem: dict[str, Any], checks: int, refused: list[str]
                  ) -> dict[str, Any] | None:
    team = ctx.team
    definition = team.definition(ctx.agent)
    target = task_id if remedy == "cancel" else agent
    if not definition.may_control(agent):
        why = (f"agent {ctx.agent!r} may not {remedy} {target} (grant can_control in its "
               "agent file)")
        team.refuse_control(remedy, target, by=caller_address(ctx), agent=agent, why=why)
        refused.append(why)
        return None
    if remedy == "pause" and team.state(agent) is not AgentState.RUNNING:
        return None
    record = await team.get_task(task_id)
    if record.state.ended:
        return None
    reason = (f"{problem['kind']} in {checks} checks in a row: {problem['detail']}")
    try:
        outcome = await team.control(remedy, target, by=caller_address(ctx), reason=reason,
                                     problem=problem["key"])
    except (AccessDeniedError, WakefulError) as exc:
        refused.append(f"{remedy} {target}: {exc}")
        return None
    what = (f"paused agent {agent}" if remedy == "pause" else f"cancelled task {task_id} of "
            f"{agent}") + f" ({problem['kind']})"
    return {"what": what, "control_id": outcome.id, "action": remedy, "agent": agent,
            "task_id": task_id, "reason": reason}


async def _tell(ctx: ToolContext, outcome: dict[str, Any], problem: dict[str, Any],
                to: str | None, channel: str | None) -> None:
    mailbox = ctx.mail
    undo = "resume it" if outcome["action"] == "pause" else "start the task again"
    subject = f"[{outcome['action']}] {outcome['agent']}: {problem['kind']}"
    body = (f"I {outcome['what']}: {outcome['reason']}. A person can undo it ({undo}) "
            f"from {outcome['agent']}'s page in the web UI.")
    key = f"escalate:{problem['key']}"
    payload = {**outcome, "problem": problem["key"]}
    if to:
        await mailbox.send(ctx.agent, to, subject, body, payload=payload, priority="high",
                           idempotency_key=key)
    if channel:
        await mailbox.post(ctx.agent, channel.removeprefix("#"), body, subject,
                           payload=payload, idempotency_key=key + ":post")
    ctx.emit("monitor.escalated", **payload)


ESCALATION_TOOLS: tuple[Tool, ...] = (escalate,)
