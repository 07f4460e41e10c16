"""One task's AI loop: call the model, run the tools it asks for, repeat.

Each task owns its conversation and its tool context; nothing here is shared with any
other task. After every completed step (one model reply and the results of all its tool
calls) the new messages and counters are committed to the store in one transaction,
which is what lets a task killed mid-run resume from its last completed step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wakeful.core.backoff import next_wait
from wakeful.core.context import CURRENT_TASK, CURRENT_TRACE
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState, check_task_transition
from wakeful.errors import ConflictError, FenceError, ModelError, OutcomeUnknownError, StoreError
from wakeful.models.base import Message, ModelResponse, ToolCall
from wakeful.runtime.claiming import Claiming
from wakeful.runtime.guards import EMPTY_REPLY_NUDGE, RepeatGuard
from wakeful.runtime.model_step import (
    RESULT_EXCERPT,
    TaskFailure,
    call_model,
    check_budget,
    record_tool,
)
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import ToolOutcome

if TYPE_CHECKING:
    from wakeful.runtime.agent import AgentRunner

STORE_RETRIES = 5  # a failed end-of-run write, other than a lost commit, is asked again

MAX_CONSECUTIVE_TOOL_ERRORS = 5


class TaskLoop(Claiming):
    def __init__(self, agent: AgentRunner, record: TaskRecord) -> None:
        self.agent = agent
        self.record = record
        self.runtime = agent.runtime
        self.ctx = ToolContext(agent=agent.name, task_id=record.id, runtime=agent.runtime,
                               loop=self)
        self.waiting_on: str | None = None  # what a waiting task is blocked on
        self.messages: list[Message] = []
        self.interrupted = False  # set by the owner before cancelling: requeue, not cancel
        self.retryable = False  # after a failure: may the restart policy retry it?
        self.lost = False  # another claim won, or the agent's lease moved: not ours
        self._tool_errors = 0
        # Tool results queued in the store and not yet known durable: the next step's
        # write is queued behind them and waits for them with its own (one commit a
        # step, not two), while the model is already called for that step.
        self._unsaved: list[asyncio.Future[None]] = []
        self._repeats = RepeatGuard(agent.definition.guards.repeated_call_limit)

    @property
    def id(self) -> str:
        return self.record.id

    async def set_state(self, target: TaskState, reason: str = "",
                        expect: tuple[TaskState, ...] = (), **fields: Any) -> None:
        """Change state (checked), durably, fenced by the agent's lease. The store must
        agree the task is still where this loop left it (or in one of ``expect``): a
        write whose commit landed just as the loop was cancelled (a final step) is
        never undone by a requeue."""
        current = self.record.state
        check_task_transition(self.id, current, target)
        expected = [current.value, *(s.value for s in expect if s is not current)]
        changed = await self.runtime.store.update_task(
            self.id, self.agent.fence, expect_state=expected, state=target.value, **fields)
        if not changed:
            await self._catch_up()
            return
        self.record.state = target
        for name, value in fields.items():
            setattr(self.record, name, value)
        self._state_event(current, target, reason, fields)

    async def set_state_surely(self, target: TaskState, reason: str = "",
                               **fields: Any) -> None:
        """``set_state`` for a write that ends a run (failed, or queued for a retry),
        asked again while the store fails it: given up, the task would be held nowhere,
        neither run here nor (still counted as this worker's) read again from the store.
        A repeat of a write that did land finds the store ahead and catches up with it.
        A lost commit is asked again for as long as it takes; any other store error a
        few times, then raised (a fenced write at once)."""
        wait, errors = 0.0, 0
        while True:
            try:
                await self.set_state(target, reason=reason, **fields)
                return
            except (FenceError, ConflictError):
                raise
            except StoreError as exc:
                errors += not isinstance(exc, OutcomeUnknownError)
                if errors > STORE_RETRIES:
                    raise
                self.runtime.events.emit("task.write_retried", agent=self.agent.name,
                                         task_id=self.id, data={
                                             "to": target.value, "error": str(exc)})
                wait = next_wait(wait)
                await asyncio.sleep(wait)

    async def _catch_up(self) -> None:
        """The store is ahead of this loop (a final step committed as the loop was
        cancelled): take the stored state, and settle the task if it has ended."""
        stored = await self.runtime.store.get_task(self.id)
        if stored is None or stored.state is self.record.state:
            return
        self.record.state = stored.state
        self.record.result, self.record.error = stored.result, stored.error
        if stored.state.ended:
            self.runtime.settle(self.record)

    def _state_event(self, current: TaskState, target: TaskState, reason: str,
                     fields: dict[str, Any]) -> None:
        data: dict[str, Any] = {"from": current.value, "to": target.value}
        if reason:
            data["reason"] = reason
        data.update((k, v) for k, v in fields.items() if k in ("error", "error_kind", "attempt"))
        self.runtime.events.emit("task.state", agent=self.agent.name, task_id=self.id, data=data)
        self.agent.changed()

    async def wait_begin(self, reason: str) -> None:
        """running -> waiting, remembering on what (shown by status views)."""
        self.waiting_on = reason
        await self.set_state(TaskState.WAITING, reason=reason)

    async def wait_end(self) -> None:
        self.waiting_on = None
        if self.record.state is TaskState.WAITING:
            await self.set_state(TaskState.RUNNING)

    async def run(self) -> None:
        """Run to a final state; never raises except CancelledError."""
        CURRENT_TASK.set(self.id)
        CURRENT_TRACE.set(self.record.trace_id or self.id)
        try:
            await self._guarded()
        except FenceError as exc:  # the agent moved to another worker: stop, write nothing
            self.lost = True
            self.runtime.events.emit("task.fenced_out", agent=self.agent.name,
                                     task_id=self.id, data={"error": str(exc)})

    async def _guarded(self) -> None:
        try:
            await self._run()
        except FenceError:
            raise
        except TaskFailure as failure:
            await self._fail(failure)
        except OutcomeUnknownError as exc:
            await self._resume_later(exc)
        except ModelError as exc:
            retryable = bool(getattr(exc, "retryable", True))  # a wrong API key will stay wrong
            await self._fail(TaskFailure("model", str(exc), retryable, traceback.format_exc()))
        except Exception as exc:
            await self._fail(TaskFailure("internal", f"{type(exc).__name__}: {exc}", True,
                                         traceback.format_exc()))
        except BaseException:  # CancelledError: interrupted (resume later) or cancelled
            target = TaskState.QUEUED if self.interrupted else TaskState.CANCELLED
            if self.record.state in (TaskState.RUNNING, TaskState.WAITING):
                # Either of the two: a change between them may have committed just as
                # the loop was cancelled, unseen here.
                live = (TaskState.RUNNING, TaskState.WAITING)
                with contextlib.suppress(FenceError):
                    if self.interrupted:
                        await self.set_state(target, reason="interrupted; will resume",
                                             expect=live, owner=None)
                    else:
                        await self.set_state(target, reason="cancelled", expect=live,
                                             finished_at=time.time())
            raise

    def _unanswered(self) -> list[ToolCall]:
        """The calls of the last stored reply that have no stored result yet (a task
        stopped while its tools ran): only these run again."""
        for i in range(len(self.messages) - 1, -1, -1):
            message = self.messages[i]
            if message.role == "assistant":
                done = {m.tool_call_id for m in self.messages[i + 1:] if m.role == "tool"}
                return [c for c in message.tool_calls if c.id not in done]
            if message.role != "tool":
                return []
        return []

    async def _run(self) -> None:
        try:
            claimed = await self._claim()
        except FenceError:
            raise
        except Exception as exc:  # the store failed: not the task's fault
            await self._unclaim(exc)
            claimed = False
        if not claimed:
            self.lost = True
            return
        definition = self.agent.definition
        guards = definition.guards
        self._repeats = RepeatGuard(guards.repeated_call_limit)
        specs = self.runtime.tools.specs(sorted(self.agent.allowed_tools))
        unanswered = self._unanswered()
        if unanswered:
            await self._run_calls(unanswered)
        empty_replies = 0
        while True:
            await self.agent.gate(self)
            await self.runtime.responder.new_messages.take_into(self)  # on_new_message
            if self.record.step >= definition.max_steps:
                raise TaskFailure("step_limit", f"task {self.id} reached its step limit "
                                  f"({definition.max_steps} steps) without finishing", False)
            await check_budget(self)
            step_started = time.perf_counter()
            response = await call_model(self, specs)
            reply = response.message
            new: list[Message] = [self._storable(reply)]
            if not reply.tool_calls and not (reply.content or "").strip():
                empty_replies += 1
                self.runtime.events.emit("model.empty_reply", agent=self.agent.name,
                                         task_id=self.id, data={
                                             "count": empty_replies,
                                             "max_empty_replies": guards.max_empty_replies})
                new.append(Message(role="user", content=EMPTY_REPLY_NUDGE))
                await self._commit(new, response, final=False, started=step_started)
                if empty_replies > guards.max_empty_replies:
                    raise TaskFailure("empty_reply", f"task {self.id}: the model replied with "
                                      f"nothing {empty_replies} times in a row "
                                      f"(max_empty_replies: {guards.max_empty_replies})", False)
                continue
            empty_replies = 0
            # The reply is stored before its tools run: a resumed task never asks the
            # model again for a step it answered.
            await self._commit(new, response, final=not reply.tool_calls,
                               tool_calls=len(reply.tool_calls), started=step_started)
            if not reply.tool_calls:
                return
            await self._run_calls(reply.tool_calls)

    def _storable(self, reply: Message) -> Message:
        """The reply as the conversation keeps it: a tool call's arguments over the
        registry's limit are replaced by a note (the call itself is refused with the
        reason), so that megabytes a model produced never reach the store or the next
        prompt."""
        limit = self.runtime.tools.max_argument_chars
        if not any(len(c.arguments) > limit for c in reply.tool_calls):
            return reply
        calls = tuple(c if len(c.arguments) <= limit else dataclasses.replace(
            c, arguments=json.dumps({"omitted": f"{len(c.arguments):,} characters of "
                                                f"arguments, over the limit of {limit:,}"}))
            for c in reply.tool_calls)
        return dataclasses.replace(reply, tool_calls=calls)

    async def _run_calls(self, calls: Sequence[ToolCall]) -> None:
        """Run tool calls in order, storing each result (with the mail acks it made) as
        it completes; an interrupted call runs again on resume (at-least-once)."""
        guards = self.agent.definition.guards
        repeats = self._repeats
        in_reply = next((m.tool_calls for m in reversed(self.messages)
                         if m.role == "assistant"), calls)
        positions = {c.id: i for i, c in enumerate(in_reply)}
        for call in calls:
            self.ctx.call_index = positions.get(call.id, 0)
            if repeats.observe(call):
                outcome = ToolOutcome(False, repeats.message(call), "error")
                self.runtime.events.emit("tool.loop", agent=self.agent.name,
                                         task_id=self.id, data={
                                             "tool": call.name,
                                             "arguments": call.arguments[:RESULT_EXCERPT],
                                             "repeats": repeats.streak,
                                             "warning": repeats.warnings,
                                             "max_loop_warnings": guards.max_loop_warnings})
            else:
                started = time.perf_counter()
                # through the approvals service: a call a person must approve waits
                outcome = await self.runtime.approvals.call(self.ctx, self.agent.allowed_tools,
                                                            call)
                record_tool(self, call.name, call.arguments, outcome,
                                  (time.perf_counter() - started) * 1000)
                denied = outcome.error_kind == "denied"  # a person's answer, not a failure
                self._tool_errors = 0 if outcome.ok or denied else self._tool_errors + 1
            message = Message(role="tool", content=outcome.content, tool_call_id=call.id,
                              name=call.name)
            await self._save_result(message)
        if self._tool_errors >= MAX_CONSECUTIVE_TOOL_ERRORS:
            raise TaskFailure("tool", f"task {self.id} gave up after {self._tool_errors} "
                              "consecutive failed tool calls", False)
        if repeats.warnings > guards.max_loop_warnings:
            raise TaskFailure("tool_loop", f"task {self.id}: the model kept repeating the "
                              f"same call to tool {calls[-1].name!r} after "
                              f"{repeats.warnings - 1} warnings (repeated_call_limit: "
                              f"{guards.repeated_call_limit}, max_loop_warnings: "
                              f"{guards.max_loop_warnings})", False)

    async def _save_result(self, message: Message) -> None:
        """Queue a tool result's write. One that carries mail (sends, acks) is waited
        for at once, since others wait on it; any other is waited for with the next
        write of this task, so the model is called meanwhile. A task killed before it
        lands runs that call again on resume, as when killed during the call."""
        record = self.record
        fields: dict[str, Any] = {"tool_calls": record.tool_calls + 1}
        if self.ctx.scratch:
            fields["scratch"] = json.dumps(self.ctx.scratch, default=str)
        mail = self.ctx.take_changes()
        self._queue(self.runtime.store.queue_step(
            self.id, len(self.messages), [message.to_dict()], fence=self.agent.fence,
            mail=mail, **fields))
        self.messages.append(message)
        record.tool_calls = fields["tool_calls"]
        record.scratch = fields.get("scratch", record.scratch)
        if mail:
            await self._saved()

    def _queue(self, write: asyncio.Future[None]) -> None:
        # Its failure is raised by _saved; if the loop ends first, it is logged there.
        write.add_done_callback(_retrieve)
        self._unsaved.append(write)

    async def _saved(self) -> None:
        """Wait until every write queued so far is durable; raise the first failure
        (a later write fails too: the store never stores a step after a missing one)."""
        unsaved, self._unsaved = self._unsaved, []
        error: BaseException | None = None
        for write in unsaved:
            try:
                await write
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    async def _commit(self, new: list[Message], response: ModelResponse, *, final: bool,
                      started: float, tool_calls: int = 0) -> None:
        """Store a model reply (and, for an empty one, the nudge after it) as a step."""
        record = self.record
        usage = response.usage
        step = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cost": response.cost, "tool_calls": tool_calls,
                "wall_s": time.perf_counter() - started}
        fields: dict[str, Any] = {
            "step": record.step + 1, "input_tokens": record.input_tokens + usage.input_tokens,
            "output_tokens": record.output_tokens + usage.output_tokens,
            "cost": record.cost + (response.cost or 0.0),
        }
        if final:
            check_task_transition(self.id, record.state, TaskState.DONE)
            fields.update(state=TaskState.DONE.value, result=new[-1].content or "",
                          finished_at=time.time())
            if response.truncated:
                fields["truncated"] = True
        # Spent as soon as the reply arrived: budgets see it before the write lands.
        self.agent.ledger.add(**step)
        self.runtime.usage.add(self.agent.name, **step)
        self._queue(self.runtime.store.queue_step(self.id, len(self.messages),
                                                  [m.to_dict() for m in new],
                                                  fence=self.agent.fence, **fields))
        await self._saved()
        self.messages.extend(new)
        previous = record.state
        for name, value in fields.items():
            setattr(record, name, TaskState(value) if name == "state" else value)
        if final:
            self.runtime.events.emit("task.state", agent=self.agent.name, task_id=self.id,
                                     data={"from": previous.value, "to": "done",
                                           "result": (record.result or "")[:RESULT_EXCERPT],
                                           **({"truncated": True} if response.truncated
                                              else {})})
            self.agent.changed()

    async def _fail(self, failure: TaskFailure) -> None:
        self.runtime.events.emit("task.failed", agent=self.agent.name, task_id=self.id, data={
            "kind": failure.kind, "error": failure.message, "retryable": failure.retryable,
            "traceback": failure.trace, "step": self.record.step})
        self.retryable = failure.retryable
        await self.set_state_surely(TaskState.FAILED, error=failure.message,
                                    error_kind=failure.kind, finished_at=time.time())


def _retrieve(write: asyncio.Future[None]) -> None:
    """Mark a queued write's failure as seen (it is raised, or the task already ended)."""
    if not write.cancelled():
        write.exception()
