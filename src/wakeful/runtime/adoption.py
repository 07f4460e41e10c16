"""What a worker does as it takes an agent's lease, loses it, or hands it over, as
methods of :class:`~wakeful.runtime.runtime.Runtime` (the leases themselves are kept
by :class:`~wakeful.runtime.ownership.Ownership`).

Taking agents is done for all of a round's grants at once: one read of the saved agent
states, one of their open mail, their state writes concurrently (so that they share
group commits), one read of their queued tasks. A thousand agents start in a few
commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import TYPE_CHECKING

from wakeful.core.records import AgentGrant, AgentRecord, Fence
from wakeful.core.states import AgentState
from wakeful.runtime.controls import USER_STOP

if TYPE_CHECKING:
    from wakeful.core.scope import TaskScope
    from wakeful.mailbox.service import Mailbox
    from wakeful.observe.events import EventLog
    from wakeful.runtime.agent import AgentRunner
    from wakeful.runtime.ownership import Ownership
    from wakeful.runtime.responder import Responder
    from wakeful.store.base import Store


class Adoption:
    """Adopt, lose and hand over agents."""

    if TYPE_CHECKING:  # what the runtime provides
        store: Store
        events: EventLog
        ownership: Ownership
        agents: dict[str, AgentRunner]
        mailbox: Mailbox
        responder: Responder
        _scope: TaskScope
        _known: set[str]

        def changed(self) -> None: ...

        async def _load_queued(self, agent: str | None = None,
                               agents: Collection[str] | None = None) -> None: ...

    async def _adopt(self, grants: list[AgentGrant]) -> None:
        """This worker took agents' leases: run them from where the store says they
        are. All at once, so that a thousand agents cost a few reads and commits."""
        saved = await self.store.load_agents()
        for grant in grants:
            agent = self.agents[grant.agent]
            agent.fence = Fence(grant.agent, self.ownership.worker_id, grant.epoch)
            agent.record.state = AgentState.CREATED
            for task_id in grant.requeued:
                self.events.emit("task.recovered", agent=agent.name, task_id=task_id,
                                 data={"reason": "its previous worker stopped while it ran",
                                       "epoch": grant.epoch})
            self.events.emit("agent.adopted", agent=agent.name, data={
                "worker": self.ownership.worker_id, "epoch": grant.epoch,
                "requeued": len(grant.requeued)})
        await self.mailbox.adopt([g.agent for g in grants])
        await self.responder.adopt([g.agent for g in grants])
        await asyncio.gather(*(self._resume_agent(self.agents[g.agent], saved.get(g.agent))
                               for g in grants))
        await self._load_queued(agents={g.agent for g in grants})

    async def _resume_agent(self, agent: AgentRunner, saved: AgentRecord | None) -> None:
        if saved is not None and saved.state is AgentState.STOPPED and saved.reason == USER_STOP:
            await agent.set_state(AgentState.STOPPED, USER_STOP)
            return
        await agent.set_state(AgentState.RUNNING, "started")
        if saved is not None and saved.state in (AgentState.PAUSED, AgentState.SLEEPING):
            await agent.set_state(saved.state, saved.reason)
        agent.launch(self._scope)

    async def _lost(self, name: str) -> None:
        """Another worker took this agent (this one stalled past its lease): stop its
        loops; their writes are refused by the fence, so nothing lands twice."""
        await self._release_agent(name)
        self.events.emit("agent.lease_lost", agent=name,
                         data={"worker": self.ownership.worker_id})

    async def _hand_over(self, name: str) -> None:
        """Give an agent to another worker (rebalancing): interrupt its tasks (back to
        the queue), then the caller releases the lease."""
        await self._release_agent(name)
        self.events.emit("agent.handed_over", agent=name,
                         data={"worker": self.ownership.worker_id})

    async def _release_agent(self, name: str) -> None:
        agent = self.agents[name]
        # Its running tasks go back to the queue too: forget them all, so that if this
        # worker takes the agent again it takes them again.
        running = [record.id for record in agent.running_tasks]
        await agent.halt()
        queued = [record.id for record in agent.take_queue()]
        self._known.difference_update(running, queued)
        self.mailbox.forget(name)
        self.responder.forget([*running, *queued])
        self.changed()

