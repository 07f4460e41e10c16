"""How a task loop wins its run in the store, and gives it back when a write's
outcome is unknown, as methods of :class:`~wakeful.runtime.task_loop.TaskLoop`.

A run starts with a claim (queued -> running, fenced by the agent's lease): only the
claim that wins runs the task. A claim or a step whose commit's outcome was lost with
its connection is not the task's failure: the task goes back to the queue and is
resumed from what the store holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING

from wakeful.core.backoff import next_wait
from wakeful.core.states import TaskState
from wakeful.errors import OutcomeUnknownError
from wakeful.models.base import Message
from wakeful.runtime.responder import answering_note

if TYPE_CHECKING:
    from wakeful.core.records import TaskRecord
    from wakeful.runtime.agent import AgentRunner
    from wakeful.runtime.runtime import Runtime
    from wakeful.toolkit.context import ToolContext


class Claiming:
    """Claim a task's run; put it back when the store's answer was lost."""

    if TYPE_CHECKING:  # what the task loop provides
        agent: AgentRunner
        record: TaskRecord
        runtime: Runtime
        ctx: ToolContext
        messages: list[Message]
        lost: bool

        @property
        def id(self) -> str: ...

        async def set_state(self, target: TaskState, reason: str = "",
                            expect: tuple[TaskState, ...] = (), **fields: object) -> None: ...

        def _state_event(self, current: TaskState, target: TaskState, reason: str,
                         fields: dict[str, object]) -> None: ...

    def _opening(self) -> list[Message]:
        system = self.agent.definition.system_prompt()
        note = answering_note(self.record)  # a person's mail: who wrote, where answers go
        return [Message(role="system", content=f"{system}\n\n{note}" if note else system),
                Message(role="user", content=self.record.instruction)]

    async def _claim(self) -> bool:
        """Win this run of the task in the store (queued -> running), or leave it: a
        task is run only by the one claim that wins, whoever else saw it queued."""
        fence = self.agent.fence
        if fence is None:
            return False
        opening = self._opening()
        write = asyncio.ensure_future(self.runtime.store.claim_task(
            self.id, fence, [m.to_dict() for m in opening], started_at=time.time()))
        try:
            claimed = await asyncio.shield(write)
        except asyncio.CancelledError:
            # The claim may commit all the same: then this run holds the task, and the
            # interruption below must give it back (else it stays running, with no loop).
            with contextlib.suppress(Exception):
                if await write is not None:
                    self.record.state = TaskState.RUNNING
            raise
        if claimed is None:
            return False
        previous = self.record.state
        stored, resumed = claimed
        for name in ("state", "owner", "step", "input_tokens", "output_tokens", "tool_calls",
                     "cost", "scratch", "started_at", "attempt", "progress", "progress_note"):
            setattr(self.record, name, getattr(stored, name))
        if self.record.scratch:
            self.ctx.scratch.update(json.loads(self.record.scratch))
        if resumed:
            self.messages = [Message.from_dict(m)
                             for m in await self.runtime.store.load_messages(self.id)]
        else:
            self.messages = opening
        self._state_event(previous, TaskState.RUNNING, "", {})
        if resumed:
            self.runtime.events.emit("task.resumed", agent=self.agent.name, task_id=self.id,
                                     data={"from_step": self.record.step})
        return True

    async def _unclaim(self, exc: Exception) -> None:
        """A claim that raised (its connection lost at commit, say) may have committed
        or not: put the task back in the queue if it did, and leave it to be taken again
        (by the store's next look), rather than fail a task that never ran or leave it
        running with no loop."""
        self.runtime.events.emit("task.claim_failed", agent=self.agent.name, task_id=self.id,
                                 data={"error": f"{type(exc).__name__}: {exc}"})
        wait = 0.0
        while True:
            try:
                await self.runtime.store.update_task(
                    self.id, self.agent.fence, expect_state=[TaskState.RUNNING.value],
                    state=TaskState.QUEUED.value, owner=None)
                return
            except OutcomeUnknownError:  # lost again: ask again (it is idempotent)
                wait = next_wait(wait)
                await asyncio.sleep(wait)
            except Exception:  # fenced out, or refused: left to the agent's next owner
                return

    async def _resume_later(self, exc: OutcomeUnknownError) -> None:
        """A write of this run whose commit's outcome was lost (its connection dropped
        during COMMIT) is no failure of the task: put it back in the queue, to be taken
        again and resumed from what the store holds (the model asked again for a reply
        that was not stored). If the lost write ended the task, that is taken instead."""
        self.runtime.events.emit("task.write_unknown", agent=self.agent.name,
                                 task_id=self.id, data={"error": str(exc)})
        live = (TaskState.RUNNING, TaskState.WAITING)
        wait = 0.0
        while self.record.state in live:  # left running, it would wait for a new owner
            try:
                await self.set_state(TaskState.QUEUED, expect=live, owner=None,
                                     reason="a write's outcome was lost; will resume")
                break  # put back, or caught up with what the store holds
            except OutcomeUnknownError:  # lost again: ask again (the catch-up sees it)
                wait = next_wait(wait)
                await asyncio.sleep(wait)
            except Exception:  # fenced out (the agent's next owner requeued it), or the
                break  # store refuses: its lease's end frees it
        self.lost = True  # requeued (or settled by the catch-up): no restart policy
