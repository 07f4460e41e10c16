"""The sleep, schedule, progress and monitoring tools a model calls.

Sleeping: ``sleep_for``, ``sleep_until`` and ``wait_for_event`` mark the task waiting
(with the exact reason: ``wakeful why`` shows it), hold no model session while they
wait, and return the wake-up message as their result: which timer fired, which event
happened, or that the wait timed out. Each wait is stored under the task, its step and
the call, so a task resumed after a restart (which redoes its unfinished step, calling
the tool again) sleeps only the time that was left.

Scheduling: ``set_schedule`` / ``cancel_schedule`` / ``list_schedules`` manage durable
timers that start tasks.

Progress: ``report_progress`` for the task itself; ``agent_status`` and ``task_status``
to see others; ``check_agents`` and ``send_alerts`` for a monitor. Seeing other agents
follows the caller's ``can_watch`` (a monitor has ``["*"]``); anything else is refused
and recorded (``monitor.access_denied``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from wakeful.core.conditions import EventSpec, Who, condition_of
from wakeful.core.timespecs import parse_seconds, parse_when
from wakeful.errors import AccessDeniedError, ScheduleError, WakefulError
from wakeful.project.definitions import ScheduleEntry
from wakeful.schedule.monitor import Problem, find_problems, summary
from wakeful.schedule.plans import schedule_spec
from wakeful.toolkit.capabilities import PendingWaitLike
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import Tool, tool

_PROBLEMS = "monitor:problems"  # scratch: what this task's last check_agents found
MAX_SLEEP_S = 366 * 86400.0

Duration = Annotated[str | float, Field(
    description="how long: seconds as a number, or text such as '30s', '30m', '2h'")]
Timezone = Annotated[str, Field(description="an IANA time zone such as 'Europe/Paris'")]


def _key(ctx: ToolContext, kind: str, *parts: Any) -> str | None:
    """The same call at the same step of the same task gets the same key: a resumed task
    finds the wait (or schedule) its interrupted step had set up."""
    if ctx.loop is None:
        return None
    step = ctx.loop.record.step
    n = ctx.call_index  # the call's place in the model's reply: the same when resumed
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    return f"{kind}:{ctx.task_id}:{step}:{n}:{digest.hexdigest()[:16]}"


async def _sleep(ctx: ToolContext, pending: PendingWaitLike) -> dict[str, Any]:
    if pending.ended is not None:
        return (await pending.wait()).result()  # at once, recording the wake-up
    async with ctx.waiting(pending.describe()):
        wake = await pending.wait()
    return wake.result()


def _seconds(value: str | float, what: str) -> float:
    seconds = parse_seconds(value)
    if seconds > MAX_SLEEP_S:
        raise ScheduleError(f"{what} of {value!r} is longer than a year; use a schedule "
                            "(set_schedule) for something that far away")
    return seconds


@tool
async def sleep_for(ctx: ToolContext, duration: Duration) -> dict[str, Any]:
    """Sleep for a while, then continue; returns why you woke up.

    While you sleep no model call is made for this task. Use it to wait before checking
    on something again.
    """
    seconds = _seconds(duration, "a sleep")
    until = ctx.clock.now() + seconds
    pending = await ctx.waits.prepare(
        Who(ctx.agent, ctx.task_id), until=until,
        key=_key(ctx, "sleep_for", duration))
    return await _sleep(ctx, pending)


@tool
async def sleep_until(
    ctx: ToolContext,
    when: Annotated[str, Field(description="an ISO 8601 date-time ('2025-06-01T09:30', "
                               "read in timezone) or a time of day ('09:30': the next time "
                               "the clock shows it)")],
    timezone: Timezone = "UTC",
) -> dict[str, Any]:
    """Sleep until a date and time (or the next time of day), then continue; returns why
    you woke up."""
    clock = ctx.clock
    until = parse_when(when, timezone, clock.now())
    if until - clock.now() > MAX_SLEEP_S:
        raise ScheduleError(f"{when!r} is more than a year away; use a schedule "
                            "(set_schedule) for something that far away")
    pending = await ctx.waits.prepare(
        Who(ctx.agent, ctx.task_id), until=until,
        key=_key(ctx, "sleep_until", when, timezone))
    return await _sleep(ctx, pending)


@tool
async def wait_for_event(
    ctx: ToolContext,
    events: Annotated[list[EventSpec], Field(
        min_length=1, max_length=20,
        description="wake on the first of these: {kind: mail, sender?, subject?, "
        "thread_id?, correlation_id?, payload?}, {kind: task, task_id, state?: "
        "done|failed|cancelled|finished}, {kind: agent, agent, state?}, {kind: resource, "
        "resource}")],
    timeout: Annotated[str | float | None, Field(
        description="give up after this long ('30s', '10m', or seconds); default: wait "
        "as long as it takes")] = None,
) -> dict[str, Any]:
    """Sleep until one of several events happens (the first wins) or the timeout; returns
    which event woke you, or that it timed out.

    Mail waited for is left in your mailbox: take it with check_mail when you wake.
    """
    conditions = [condition_of(spec) for spec in events]
    until = None
    if timeout is not None:
        until = ctx.clock.now() + _seconds(timeout, "a timeout")
    pending = await ctx.waits.prepare(
        Who(ctx.agent, ctx.task_id), conditions, until=until,
        key=_key(ctx, "wait_for_event", [e.model_dump() for e in events], timeout))
    return await _sleep(ctx, pending)


# schedules ---------------------------------------------------------------------------
def _definition_of(ctx: ToolContext) -> Any:
    return ctx.team.definition(ctx.agent)


def _check_watch(ctx: ToolContext, agent: str, action: str) -> None:
    ctx.team.definition(agent)  # UnknownAgentError names the known agents
    if _definition_of(ctx).may_watch(agent):
        return
    ctx.emit("monitor.access_denied", action=action, target=agent)
    raise AccessDeniedError(f"agent {ctx.agent!r} may not {action} of agent {agent!r} "
                            f"(it may see: {', '.join(_visible(ctx))}; grant more with "
                            "can_watch in its agent file); this was refused and recorded")


def _visible(ctx: ToolContext) -> list[str]:
    definition = _definition_of(ctx)
    return [name for name in sorted(ctx.team.names()) if definition.may_watch(name)]


@tool
async def set_schedule(
    ctx: ToolContext,
    instruction: Annotated[str, Field(min_length=1, description="what each task it starts "
                                      "should do")],
    every: Annotated[str | None, Field(description="an interval: '30s', '30m', '2h'")
                     ] = None,
    cron: Annotated[str | None, Field(description="a cron line: '0 9 * * 1-5'")] = None,
    at: Annotated[str | None, Field(description="once, at an ISO 8601 date-time")] = None,
    timezone: Timezone = "UTC",
    agent: Annotated[str | None, Field(description="the agent to run the tasks; default: "
                                       "yours")] = None,
    misfire: Annotated[Literal["once", "skip", "all"], Field(
        description="runs missed while the runtime was down: fire once, skip, or all")
    ] = "once",
    max_runs: Annotated[int | None, Field(ge=1, description="stop after this many runs")
                        ] = None,
) -> dict[str, Any]:
    """Set a durable timer that starts a task with ``instruction`` each time it is due
    (give exactly one of every, cron or at). It survives restarts; a sleeping agent is
    woken by it. Returns the timer (cancel it with cancel_schedule)."""
    target = agent or ctx.agent
    _check_watch(ctx, target, "set a schedule")
    try:
        entry = ScheduleEntry(every=every, cron=cron,
                              at=datetime.fromisoformat(at.replace("Z", "+00:00"))
                              if at else None, timezone=timezone, instruction=instruction,
                              misfire=misfire, max_runs=max_runs)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ")
                             for e in exc.errors())
        raise ScheduleError(f"schedule not set: {problems}") from None
    except ValueError:
        raise ScheduleError(f"schedule not set: 'at' {at!r} is not an ISO 8601 date-time "
                            "such as '2025-06-01T09:30'") from None
    scheduler = ctx.timers
    timer = await scheduler.add(
        schedule_spec(entry, ctx.clock.now()), "start_task", agent=target,
        instruction=instruction, misfire=misfire, max_runs=max_runs,
        key=_key(ctx, "set_schedule", target, entry.model_dump_json()),
        purpose="set_schedule", created_by=f"{ctx.agent}/{ctx.task_id}")
    return timer.to_dict()


@tool
async def cancel_schedule(ctx: ToolContext, timer_id: str) -> dict[str, Any]:
    """Cancel a schedule (or an agent's wake-up timer) so that it never fires again."""
    scheduler = ctx.timers
    timer = scheduler.get(timer_id) or await scheduler.store.get(timer_id)
    if timer is None or timer.action == "wake_task":
        raise ScheduleError(f"no schedule with id {timer_id!r} (list_schedules shows them)")
    _check_watch(ctx, timer.agent or "", "cancel a schedule")
    ended = await scheduler.cancel(timer_id, f"cancelled by {ctx.agent}/{ctx.task_id}")
    return ended.to_dict()


@tool
async def list_schedules(
    ctx: ToolContext,
    agent: Annotated[str | None, Field(description="whose schedules; default: yours; '*': "
                                       "every agent you may see")] = None,
) -> list[dict[str, Any]]:
    """The active schedules and wake-up timers, soonest first."""
    if agent == "*":
        names = set(_visible(ctx))
    else:
        names = {agent or ctx.agent}
        _check_watch(ctx, agent or ctx.agent, "list the schedules")
    return [t.to_dict() for t in ctx.timers.active()
            if t.action != "wake_task" and t.agent in names]


# progress ---------------------------------------------------------------------------
@tool
async def report_progress(
    ctx: ToolContext,
    percent: Annotated[float, Field(ge=0, le=100, description="how far along, 0-100")],
    note: Annotated[str, Field(max_length=500, description="what is done, what is next")
                    ] = "",
) -> dict[str, Any]:
    """Say how far along this task is; others (a monitor, a person) see it."""
    record = await ctx.progress.report(ctx.task_id, percent, note)
    return {"task_id": record.id, "progress": record.progress, "note": note}


@tool
async def agent_status(
    ctx: ToolContext,
    agent: Annotated[str | None, Field(description="one agent in detail; default: every "
                                       "agent you may see, in brief")] = None,
) -> Any:
    """Status and progress of agents: state, current tasks (step, progress, what they
    wait for), last activity, tokens used, tasks started and finished, next wake-up."""
    progress = ctx.progress
    if agent is not None:
        _check_watch(ctx, agent, "see the status")
        return await progress.agent_status(agent)
    return await progress.overview(_visible(ctx))


@tool
async def task_status(ctx: ToolContext, task_id: str) -> dict[str, Any]:
    """One task's status and progress: state, step, reported progress, last activity,
    tokens, what it waits for, its recent events."""
    record = await ctx.team.get_task(task_id)
    _check_watch(ctx, record.agent, "see the tasks")
    return await ctx.progress.task_status(task_id)


# monitoring ---------------------------------------------------------------------------
@tool
async def check_agents(
    ctx: ToolContext,
    stuck_after_s: Annotated[float, Field(gt=0, description="a task with no progress for "
                                          "this many seconds is stuck")] = 300.0,
    repeated_calls: Annotated[int, Field(ge=2, description="the same tool call this many "
                                         "times in a row is a loop")] = 3,
) -> dict[str, Any]:
    """Check every agent you may see: their states and tasks, and the problems found
    (stuck tasks, looping tasks, failures). send_alerts then reports the new ones."""
    names = [n for n in _visible(ctx) if n != ctx.agent]
    problems = await find_problems(ctx, names, stuck_after_s=stuck_after_s,
                                   repeated_calls=repeated_calls)
    ctx.scratch[_PROBLEMS] = [p.to_dict() for p in problems]
    # What this check flagged, durably: escalate acts on work flagged in several checks
    # in a row (each check runs in a task of its own).
    ctx.emit("monitor.checked", flagged=[{"kind": p.kind, "agent": p.agent,
                                          "task": p.task_id, "key": p.key}
                                         for p in problems if p.kind != "failed"])
    overview = await ctx.progress.overview(names)
    agents = [{"agent": a["agent"], "state": a["state"], "running": a["tasks"]["running"],
               "queued": a["tasks"]["queued"], "finished": a["tasks"]["finished"],
               "idle_s": a["idle_s"], "tokens_used": a["tokens_used"]} for a in overview]
    return {"summary": summary(problems, len(names)), "agents": agents,
            "problems": [p.to_dict() for p in problems]}


@tool
async def send_alerts(
    ctx: ToolContext,
    to: Annotated[str | None, Field(description="who to mail each new problem to (an "
                                    "agent, a person)")] = "coordinator",
    channel: Annotated[str | None, Field(description="a channel to post each new problem "
                                         "to")] = "alerts",
) -> dict[str, Any]:
    """Report the problems your last check_agents found, each one once: by mail to
    ``to`` and as a post to ``channel``. Problems reported before are skipped."""
    if not to and not channel:
        raise WakefulError("send_alerts needs somewhere to send them: to, channel or both")
    if _PROBLEMS not in ctx.scratch:
        raise WakefulError("no check to report on: call check_agents first")
    problems = [Problem(**p) for p in ctx.scratch[_PROBLEMS]]
    mailbox = ctx.mail
    sent: list[str] = []
    repeats = 0
    for problem in problems:
        key = f"alert:{problem.key}"
        # From the monitor agent's own address, so the idempotency key holds across all
        # its tasks (each check runs in a new one): an alert goes out once.
        fresh = True
        if to:
            mail = await mailbox.send(ctx.agent, to, problem.subject, problem.detail,
                                      payload=problem.to_dict(), priority="high",
                                      idempotency_key=key)
            fresh = not mail.duplicate
        if channel and fresh:
            post = await mailbox.post(ctx.agent, channel.removeprefix("#"), problem.detail,
                                      problem.subject, payload=problem.to_dict(),
                                      idempotency_key=key + ":post")
            fresh = not post.duplicate
        if fresh:
            sent.append(problem.subject)
            ctx.emit("monitor.alert", kind=problem.kind, agent_flagged=problem.agent,
                     task=problem.task_id, detail=problem.detail, to=to, channel=channel)
        else:
            repeats += 1
    return {"alerted": sent, "already_reported": repeats,
            "summary": f"{len(sent)} new alerts sent, {repeats} reported before"
            if problems else "nothing to report"}


SCHEDULE_TOOLS: tuple[Tool, ...] = (sleep_for, sleep_until, wait_for_event, set_schedule,
                                    cancel_schedule, list_schedules, report_progress,
                                    agent_status, task_status, check_agents, send_alerts)
