"""One task's AI loop: call the model, run the tools it asks for, repeat.

Each task owns its conversation and its tool context; nothing here is shared with any
other task. After every completed step (one model reply and the results of all its tool
calls) the new messages and counters are committed to the store in one transaction,
which is what lets a task killed mid-run resume from its last completed step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import traceback
from typing import TYPE_CHECKING, Any

from wakeful.errors import ModelError
from wakeful.mailbox.responder import answering_note
from wakeful.models.base import Completed, Message, ModelResponse, TextDelta
from wakeful.models.calls import reporting_to
from wakeful.observe.context import CURRENT_TASK, CURRENT_TRACE
from wakeful.runtime import budget
from wakeful.runtime.context import ToolContext
from wakeful.runtime.guards import EMPTY_REPLY_NUDGE, RepeatGuard
from wakeful.runtime.states import TaskState, check_task_transition
from wakeful.store.records import TaskRecord
from wakeful.tools.registry import ToolOutcome

if TYPE_CHECKING:
    from wakeful.runtime.agent import AgentRunner

MAX_CONSECUTIVE_TOOL_ERRORS = 5
_RESULT_EXCERPT = 500


class TaskFailure(Exception):
    """Ends a task as failed. ``retryable`` says whether a restart policy may retry it."""

    def __init__(self, kind: str, message: str, retryable: bool = True,
                 trace: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.trace = trace


class TaskLoop:
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

    @property
    def id(self) -> str:
        return self.record.id

    async def set_state(self, target: TaskState, reason: str = "",
                        opening: list[Message] | None = None, **fields: Any) -> None:
        """Change state (checked), durably; ``opening`` also stores the first messages
        of a fresh task in the same write."""
        current = self.record.state
        check_task_transition(self.id, current, target)
        self.record.state = target
        for name, value in fields.items():
            setattr(self.record, name, value)
        if opening is not None:
            await self.runtime.store.save_step(self.id, 0, [m.to_dict() for m in opening],
                                               state=target.value, **fields)
        else:
            await self.runtime.store.update_task(self.id, state=target.value, **fields)
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

    def _opening(self) -> list[Message]:
        system = self.agent.definition.system_prompt()
        note = answering_note(self.record)  # a person's mail: who wrote, where answers go
        return [Message(role="system", content=f"{system}\n\n{note}" if note else system),
                Message(role="user", content=self.record.instruction)]

    async def _load_conversation(self) -> bool:
        """Take up a task that ran before (interrupted, retried): its stored messages."""
        stored = await self.runtime.store.load_messages(self.id)
        if self.record.scratch:
            self.ctx.scratch.update(json.loads(self.record.scratch))
        if stored:
            self.messages = [Message.from_dict(m) for m in stored]
            return True
        self.messages = self._opening()
        await self.runtime.store.save_step(self.id, 0, [m.to_dict() for m in self.messages])
        return False

    async def run(self) -> None:
        """Run to a final state; never raises except CancelledError."""
        CURRENT_TASK.set(self.id)
        CURRENT_TRACE.set(self.record.trace_id or self.id)
        try:
            await self._run()
        except TaskFailure as failure:
            await self._fail(failure)
        except ModelError as exc:
            retryable = bool(getattr(exc, "retryable", True))  # a wrong API key will stay wrong
            await self._fail(TaskFailure("model", str(exc), retryable, traceback.format_exc()))
        except Exception as exc:
            await self._fail(TaskFailure("internal", f"{type(exc).__name__}: {exc}", True,
                                         traceback.format_exc()))
        except BaseException:  # CancelledError: interrupted (resume later) or cancelled
            target = TaskState.QUEUED if self.interrupted else TaskState.CANCELLED
            if self.record.state in (TaskState.RUNNING, TaskState.WAITING):
                if self.interrupted:
                    await self.set_state(target, reason="interrupted; will resume")
                else:
                    await self.set_state(target, reason="cancelled", finished_at=time.time())
            raise

    async def _run(self) -> None:
        if self.record.started_at is None:
            # A fresh task has nothing stored: start it and store its opening messages
            # in one write (at a thousand tasks, each saved round trip counts).
            self.messages = self._opening()
            await self.set_state(TaskState.RUNNING, opening=self.messages,
                                 started_at=time.time())
            resumed = False
        else:
            await self.set_state(TaskState.RUNNING)
            resumed = await self._load_conversation()
        if resumed:
            self.runtime.events.emit("task.resumed", agent=self.agent.name, task_id=self.id,
                                     data={"from_step": self.record.step})
        definition = self.agent.definition
        allowed = self.agent.allowed_tools
        specs = self.runtime.tools.specs(sorted(allowed))
        guards = definition.guards
        repeats = RepeatGuard(guards.repeated_call_limit)
        tool_errors = 0
        empty_replies = 0
        while True:
            await self.agent.gate(self)
            if self.record.step >= definition.max_steps:
                raise TaskFailure("step_limit", f"task {self.id} reached its step limit "
                                  f"({definition.max_steps} steps) without finishing", False)
            await self._check_budget()
            step_started = time.perf_counter()
            response = await self._call_model(specs)
            reply = response.message
            new: list[Message] = [reply]
            self.messages.append(reply)
            if not reply.tool_calls and not (reply.content or "").strip():
                empty_replies += 1
                self.runtime.events.emit("model.empty_reply", agent=self.agent.name,
                                         task_id=self.id, data={
                                             "count": empty_replies,
                                             "max_empty_replies": guards.max_empty_replies})
                nudge = Message(role="user", content=EMPTY_REPLY_NUDGE)
                self.messages.append(nudge)
                new.append(nudge)
                await self._commit(new, response, final=False, started=step_started)
                if empty_replies > guards.max_empty_replies:
                    raise TaskFailure("empty_reply", f"task {self.id}: the model replied with "
                                      f"nothing {empty_replies} times in a row "
                                      f"(max_empty_replies: {guards.max_empty_replies})", False)
                continue
            empty_replies = 0
            if not reply.tool_calls:
                await self._commit(new, response, final=True, started=step_started)
                return
            for call in reply.tool_calls:
                if repeats.observe(call):
                    outcome = ToolOutcome(False, repeats.message(call), "error")
                    self.runtime.events.emit("tool.loop", agent=self.agent.name,
                                             task_id=self.id, data={
                                                 "tool": call.name,
                                                 "arguments": call.arguments[:_RESULT_EXCERPT],
                                                 "repeats": repeats.streak,
                                                 "warning": repeats.warnings,
                                                 "max_loop_warnings": guards.max_loop_warnings})
                else:
                    started = time.perf_counter()
                    outcome = await self.runtime.tools.call(self.ctx, allowed, call)
                    self._record_tool(call.name, call.arguments, outcome,
                                      (time.perf_counter() - started) * 1000)
                    tool_errors = 0 if outcome.ok else tool_errors + 1
                tool_message = Message(role="tool", content=outcome.content,
                                       tool_call_id=call.id, name=call.name)
                self.messages.append(tool_message)
                new.append(tool_message)
            await self._commit(new, response, final=False, tool_calls=len(reply.tool_calls),
                               started=step_started)
            if tool_errors >= MAX_CONSECUTIVE_TOOL_ERRORS:
                raise TaskFailure("tool", f"task {self.id} gave up after {tool_errors} "
                                  "consecutive failed tool calls", False)
            if repeats.warnings > guards.max_loop_warnings:
                raise TaskFailure("tool_loop", f"task {self.id}: the model kept repeating the "
                                  f"same call to tool {reply.tool_calls[-1].name!r} after "
                                  f"{repeats.warnings - 1} warnings (repeated_call_limit: "
                                  f"{guards.repeated_call_limit}, max_loop_warnings: "
                                  f"{guards.max_loop_warnings})", False)

    async def _check_budget(self) -> None:
        """Fail the task, for good, if it or its agent has spent its budget."""
        definition = self.agent.definition
        ledger = self.agent.ledger
        if not ledger.loaded and budget.has_agent_limits(definition.budget):
            await ledger.load(self.runtime.store)
        exhausted = budget.check(definition.budget, self.record, ledger.spent)
        if exhausted is not None:
            self._budget_exhausted(exhausted)

    def _budget_exhausted(self, exhausted: budget.Exhausted) -> None:
        self.runtime.events.emit("budget.exhausted", agent=self.agent.name, task_id=self.id,
                                 data=exhausted.data())
        raise TaskFailure("budget", exhausted.message(self.id, self.agent.name), False)

    async def _call_model(self, specs: list[Any]) -> ModelResponse:
        events = self.runtime.events
        agent = self.agent.name
        started = time.perf_counter()
        response: ModelResponse | None = None
        wall = budget.seconds_left(self.agent.definition.budget, self.record,
                                   self.agent.ledger.spent)

        def report(event_type: str, data: dict[str, Any]) -> None:
            events.emit(event_type, agent=agent, task_id=self.id, data=data)

        deadline = None if wall is None else asyncio.timeout(max(0.0, wall[0]))
        try:
            with reporting_to(report):
                async with deadline or contextlib.nullcontext():
                    async for item in self.agent.model.stream(self.messages, specs):
                        if isinstance(item, TextDelta):
                            events.emit("model.token", agent=agent, task_id=self.id,
                                        data={"text": item.text}, persist=False)
                        elif isinstance(item, Completed):
                            response = item.response
        except TimeoutError:
            if wall is None or deadline is None or not deadline.expired():
                raise
            self._budget_exhausted(wall[1])
        except ModelError as exc:
            events.emit("model.error", agent=self.agent.name, task_id=self.id,
                        data={"error": str(exc), "model": self.agent.model.name,
                              "step": self.record.step})
            raise
        if response is None:
            raise ModelError(f"model {self.agent.model.name!r} ended its stream without a reply")
        events.emit("model.call", agent=self.agent.name, task_id=self.id, data={
            "model": response.model or self.agent.model.name,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "cost": response.cost,
            "finish_reason": response.finish_reason,
            "tool_calls": [c.name for c in response.message.tool_calls],
            **response.call_info,  # the provider's own figures: latency_ms, queued_ms...
        })
        return response

    def _record_tool(self, name: str, arguments: str, outcome: Any, latency_ms: float) -> None:
        kind = outcome.error_kind
        event_type = {None: "tool.call", "unknown": "tool.refused", "forbidden": "tool.refused",
                      "invalid_json": "tool.invalid_args", "invalid_args": "tool.invalid_args",
                      "error": "tool.error"}[kind]
        data: dict[str, Any] = {"tool": name, "arguments": arguments[:_RESULT_EXCERPT],
                                "ok": outcome.ok, "result": outcome.content[:_RESULT_EXCERPT],
                                "latency_ms": round(latency_ms, 3)}
        if kind is not None:
            data["reason"] = kind
        if outcome.traceback:
            data["traceback"] = outcome.traceback
        self.runtime.events.emit(event_type, agent=self.agent.name, task_id=self.id, data=data)

    async def _commit(self, new: list[Message], response: ModelResponse, *, final: bool,
                      started: float, tool_calls: int = 0) -> None:
        record = self.record
        usage = response.usage
        record.step += 1
        record.input_tokens += usage.input_tokens
        record.output_tokens += usage.output_tokens
        record.tool_calls += tool_calls
        record.cost += response.cost or 0.0
        step = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cost": response.cost, "tool_calls": tool_calls,
                "wall_s": time.perf_counter() - started}
        self.agent.ledger.add(**step)
        self.runtime.usage.add(self.agent.name, **step)
        fields: dict[str, Any] = {
            "step": record.step, "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens, "tool_calls": record.tool_calls,
            "cost": record.cost,
        }
        if self.ctx.scratch:
            record.scratch = json.dumps(self.ctx.scratch, default=str)
            fields["scratch"] = record.scratch
        first_seq = len(self.messages) - len(new)
        if final:
            check_task_transition(self.id, record.state, TaskState.DONE)
            record.result = new[-1].content or ""
            record.finished_at = time.time()
            fields.update(state=TaskState.DONE.value, result=record.result,
                          finished_at=record.finished_at)
        await self.runtime.store.save_step(self.id, first_seq, [m.to_dict() for m in new],
                                           **fields)
        if final:
            previous = record.state
            record.state = TaskState.DONE
            self.runtime.events.emit("task.state", agent=self.agent.name, task_id=self.id,
                                     data={"from": previous.value, "to": "done",
                                           "result": (record.result or "")[:_RESULT_EXCERPT],
                                           **({"truncated": True} if response.truncated
                                              else {})})
            self.agent.changed()

    async def _fail(self, failure: TaskFailure) -> None:
        self.runtime.events.emit("task.failed", agent=self.agent.name, task_id=self.id, data={
            "kind": failure.kind, "error": failure.message, "retryable": failure.retryable,
            "traceback": failure.trace, "step": self.record.step})
        self.retryable = failure.retryable
        await self.set_state(TaskState.FAILED, error=failure.message, error_kind=failure.kind,
                             finished_at=time.time())
