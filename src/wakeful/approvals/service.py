"""The approvals service: a tool call that needs a person's approval waits for it.

The task loop runs each tool call through :meth:`Approvals.call`. A call that matches
the agent's ``approval:`` rules does not run: an approval is stored (keyed by the task,
the step and the call, so a task resumed after a crash finds it instead of asking
again), an ``approval.requested`` event is written with it, and the task waits (state
``waiting``, reason ``approval of write_file(docs/plan.md)``) holding no model session,
while the agent's other tasks go on. A person then approves it (perhaps with edited
arguments: the call runs with those) or denies it with a reason (which the model reads
as the tool's result); or the rule's timeout decides (``on_timeout``).

Decisions made in this process wake the task at once. Decisions made elsewhere (``wakeful
approve`` in a shell, another worker's web UI) are found by looking at the store every
``poll_interval_s`` for decisions newer than the last one seen (``decided_seq``).
Waiting costs a future and two dictionary entries per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import TYPE_CHECKING, Any

import structlog

from wakeful.approvals.decisions import decide
from wakeful.approvals.rules import Requirement, requirement, summarize
from wakeful.core.approvals import APPROVED, TIMEOUT_DECIDER, Approval, approval_key
from wakeful.core.records import Event
from wakeful.core.scope import TaskScope
from wakeful.errors import WakefulError
from wakeful.ids import new_id
from wakeful.models.base import ToolCall
from wakeful.store.approvals import ApprovalStore, approval_store
from wakeful.toolkit.registry import ToolOutcome

if TYPE_CHECKING:
    from wakeful.approvals.host import ApprovalsHost
    from wakeful.toolkit.context import ToolContext

log = structlog.get_logger("wakeful.approvals")

CANCELLED_DECIDER = "system"


class Approvals:
    """The ``approvals`` service: reachable as ``runtime.approvals``."""

    name = "approvals"

    def __init__(self) -> None:
        self._runtime: ApprovalsHost | None = None
        self._family: ApprovalStore | None = None
        self._waiting: dict[str, asyncio.Future[Approval]] = {}
        self._asked: dict[str, Approval] = {}  # pending approvals of the waiting tasks
        self._published: set[str] = set()  # decisions this process announced already
        self._seq = 0
        self._scope = TaskScope("approvals")
        self.resumed = 0  # tasks woken by a decision (for benchmarks and tests)

    @property
    def runtime(self) -> ApprovalsHost:
        assert self._runtime is not None, "the approvals service is not started"
        return self._runtime

    @property
    def family(self) -> ApprovalStore:
        assert self._family is not None, "the approvals service is not started"
        return self._family

    # lifecycle -----------------------------------------------------------
    async def start(self, runtime: ApprovalsHost) -> None:
        self._runtime = runtime
        self._family = approval_store(runtime.store)
        self._seq = await self._family.last_seq()
        self._scope.spawn(self._watch(), name="approvals:watch")

    async def stop(self) -> None:
        await self._scope.aclose()

    def waiting(self) -> int:
        """How many tool calls of this process wait for a decision."""
        return len(self._waiting)

    # the task loop's hook ------------------------------------------------
    async def call(self, ctx: ToolContext, allowed: frozenset[str], call: ToolCall
                   ) -> ToolOutcome:
        """Run ``call`` through the tool registry once it may run: at once when no rule
        asks for approval, after a person approved it, or not at all (denied)."""
        tools = self.runtime.tools
        agent = self.runtime.agents.get(ctx.agent)
        config = agent.definition.approval if agent is not None else []
        if (not config or not tools.approvals_apply or call.name not in allowed
                or call.name not in tools):
            return await tools.call(ctx, allowed, call)
        args = _arguments(call)
        needed = None if args is None else requirement(config, call.name, args)
        if needed is None or args is None:
            return await tools.call(ctx, allowed, call)
        approval = await self._request(ctx, call, args, needed)
        decided = await self._decision(ctx, approval)
        if decided.state != APPROVED:
            return ToolOutcome(False, _denial(decided), "denied")
        if decided.new_arguments is None:
            return await tools.call(ctx, allowed, call)
        outcome = await tools.call(ctx, allowed, dataclasses.replace(
            call, arguments=decided.new_arguments))
        note = (f"(note: {decided.decided_by} approved this call with edited arguments: "
                f"{decided.new_arguments})\n")
        return dataclasses.replace(outcome, content=note + outcome.content)

    async def _request(self, ctx: ToolContext, call: ToolCall, args: dict[str, Any],
                       needed: Requirement) -> Approval:
        runtime = self.runtime
        step = ctx.loop.record.step if ctx.loop is not None else 0
        now = runtime.clock.now()
        approval = Approval(
            id=new_id("ap"), key=approval_key(ctx.task_id, step, ctx.call_index),
            task_id=ctx.task_id, agent=ctx.agent, tool=call.name, arguments=call.arguments,
            summary=summarize(call.name, args), approvers=list(needed.approvers),
            on_timeout="approve" if needed.on_timeout == "approve" else "deny",
            due_at=None if needed.timeout_s is None else now + needed.timeout_s,
            call_id=call.id, created_at=now)
        event = runtime.events.make(
            "approval.requested", agent=ctx.agent, task_id=ctx.task_id, data={
                "approval_id": approval.id, "tool": call.name, "summary": approval.summary,
                "arguments": call.arguments[:2000], "approvers": approval.approvers,
                "due_at": approval.due_at, "on_timeout": approval.on_timeout,
                "call_id": call.id})
        stored, new = await self.family.request(approval, event)
        if new:
            runtime.events.publish(event)
        return stored

    async def _decision(self, ctx: ToolContext, approval: Approval) -> Approval:
        """Wait until ``approval`` is decided; the task shows as waiting meanwhile."""
        if not approval.pending:
            return approval
        runtime = self.runtime
        future: asyncio.Future[Approval] = asyncio.get_running_loop().create_future()
        self._waiting[approval.id] = future
        self._asked[approval.id] = approval
        handle = None
        if approval.due_at is not None:
            def due() -> None:
                self._scope.spawn(self._time_out(approval),
                                  name=f"approvals:timeout:{approval.id}")

            handle = runtime.clock.call_at(approval.due_at, due)
        try:
            fresh = await self.family.get(approval.id)  # decided elsewhere meanwhile?
            if fresh is not None and not fresh.pending:
                return fresh
            async with ctx.waiting(f"approval of {approval.summary}"):
                decided = await future
            self.resumed += 1
            return decided
        except asyncio.CancelledError:
            loop = ctx.loop
            if loop is not None and not loop.interrupted:  # cancelled for good: withdraw
                self._scope.spawn(self._withdraw(approval), name=f"approvals:withdraw:"
                                  f"{approval.id}")
            raise
        finally:
            self._waiting.pop(approval.id, None)
            self._asked.pop(approval.id, None)
            if handle is not None:
                handle.cancel()

    # deciding ------------------------------------------------------------
    async def decide(self, approval_id: str, *, approve: bool, by: str,
                     reason: str | None = None, arguments: Any = None,
                     check_person: bool = True) -> Approval:
        """Approve or deny, as ``by`` (see :func:`wakeful.approvals.decisions.decide`);
        the waiting task goes on at once when it waits in this process."""
        runtime = self.runtime
        decided, event = await decide(self.family, runtime.events, approval_id,
                                      approve=approve, by=by, reason=reason,
                                      arguments=arguments, at=runtime.clock.now(),
                                      check_person=check_person,
                                      known=self._asked.get(approval_id))
        self._announce(decided, event)
        return decided

    def _announce(self, decided: Approval, event: Event | None) -> None:
        if decided.id not in self._published:
            self._published.add(decided.id)
            self.runtime.events.publish(event or self._event_of(decided))
        future = self._waiting.get(decided.id)
        if future is not None and not future.done():
            future.set_result(decided)

    def _event_of(self, decided: Approval) -> Event:
        """A decision made in another process, for this process's live views (its
        writer stored the event already)."""
        return self.runtime.events.make("approval.decided", agent=decided.agent,
                                        task_id=decided.task_id, data={
                                            "approval_id": decided.id,
                                            "tool": decided.tool,
                                            "summary": decided.summary,
                                            "decision": decided.state,
                                            "decided_by": decided.decided_by,
                                            "reason": decided.reason,
                                            "edited": decided.new_arguments is not None,
                                            "decided_at": decided.decided_at})

    async def _time_out(self, approval: Approval) -> None:
        approve = approval.on_timeout == "approve"
        reason = None if approve else (
            f"no decision came in time (timeout; on_timeout: {approval.on_timeout})")
        try:
            await self.decide(approval.id, approve=approve, by=TIMEOUT_DECIDER,
                              reason=reason, check_person=False)
        except WakefulError:  # a person decided first: their decision stands
            await self._catch_up(approval.id)

    async def _withdraw(self, approval: Approval) -> None:
        with contextlib.suppress(WakefulError):
            await self.decide(approval.id, approve=False, by=CANCELLED_DECIDER,
                              reason="the task was cancelled", check_person=False)

    async def _catch_up(self, approval_id: str) -> None:
        found = await self.family.get(approval_id)
        if found is not None and not found.pending:
            self._announce(found, None)

    async def _watch(self) -> None:
        """Find decisions made by other processes (see the module docstring)."""
        while True:
            await asyncio.sleep(self.runtime.poll_interval_s)
            try:
                decided = await self.family.decided_after(self._seq)
            except Exception as exc:  # the store is busy: look again next time
                log.warning("approvals: reading decisions failed", error=repr(exc))
                continue
            for approval in decided:
                self._seq = max(self._seq, approval.decided_seq or 0)
                if approval.id in self._waiting or approval.id not in self._published:
                    self._announce(approval, None)
            if len(self._published) > 100_000:
                self._published.clear()

    # reading -------------------------------------------------------------
    async def pending(self, *, task_id: str | None = None, agent: str | None = None
                      ) -> list[Approval]:
        await self.runtime.store.flush()
        return await self.family.listing(state="pending", task_id=task_id, agent=agent)

    async def get(self, approval_id: str) -> Approval | None:
        await self.runtime.store.flush()
        return await self.family.get(approval_id)


def _arguments(call: ToolCall) -> dict[str, Any] | None:
    """The call's arguments as an object, or None (the registry refuses the call)."""
    try:
        value = json.loads(call.arguments) if call.arguments.strip() else {}
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _denial(approval: Approval) -> str:
    if approval.decided_by == TIMEOUT_DECIDER:
        return (f"error: tool {approval.tool!r} was not run: nobody approved "
                f"{approval.summary} in time, so it was denied (on_timeout: deny)")
    return (f"error: tool {approval.tool!r} was not run: {approval.decided_by} denied "
            f"{approval.summary}. Reason: {approval.reason or 'no reason given'}")
