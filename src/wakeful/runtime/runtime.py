"""The runtime: owns the store, the agents and every background task.

Lifecycle of one process: :meth:`Runtime.start` opens the store, records a run,
returns tasks that a dead process left running to the queue (they resume from their
last completed step), starts every agent's supervised loop, starts firing timers
(schedules, and wake-ups of sleeping agents and tasks, including those that came due
while nothing ran), and begins watching the store for tasks queued by other processes
(``wakeful start-task``). :meth:`stop`
interrupts every task (back to the queue, resumable), cancels and awaits every
background task, and closes the store: nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TYPE_CHECKING

import structlog

from wakeful.core.records import AgentRecord, RunRecord, TaskRecord
from wakeful.core.scope import TaskScope
from wakeful.core.states import AgentState
from wakeful.core.team import AgentStatus
from wakeful.errors import FenceError, UnknownAgentError, WakefulError
from wakeful.ids import new_id
from wakeful.mailbox.service import Mailbox
from wakeful.models.registry import ModelRegistry
from wakeful.observe.events import EventLog
from wakeful.project.definitions import AgentDefinition, MailboxConfig, StartupTask
from wakeful.project.loader import Project
from wakeful.runtime.accounting import RunUsage
from wakeful.runtime.adoption import Adoption
from wakeful.runtime.agent import AgentRunner, new_task_record
from wakeful.runtime.controls import AgentControls
from wakeful.runtime.intervention import Intervention
from wakeful.runtime.ownership import Ownership
from wakeful.runtime.responder import Responder
from wakeful.runtime.service import Service
from wakeful.runtime.settling import Settling
from wakeful.runtime.signal import Signal
from wakeful.runtime.tasks import TaskMaking
from wakeful.runtime.team import Team
from wakeful.store.base import Store
from wakeful.toolkit.registry import ToolRegistry
from wakeful.tools.builtin import default_tools

if TYPE_CHECKING:
    from wakeful.resources.manager import ResourceManager
    from wakeful.schedule.clock import Clock
    from wakeful.schedule.progress import Progress
    from wakeful.schedule.timers import Scheduler
    from wakeful.schedule.waits import Waits

log = structlog.get_logger("wakeful.runtime")

RUNTIME_STOP = "the runtime stopped"
# How long a queued task may be counted as seen while held nowhere before it is taken
# again (a handover between a loop and its agent's queue takes a moment, not this long).
ORPHAN_GRACE_S = 5.0


class Runtime(Settling, Adoption, TaskMaking, AgentControls, Intervention):
    def __init__(
        self,
        *,
        store: Store,
        models: ModelRegistry,
        tools: ToolRegistry | None = None,
        agents: Iterable[AgentDefinition] = (),
        default_model: str = "scripted",
        startup_tasks: Iterable[StartupTask] = (),
        poll_interval_s: float = 0.5,
        services: Iterable[Service] = (),
        resources: ResourceManager | None = None,
        mailbox: Mailbox | None = None,
        mailbox_config: MailboxConfig | None = None,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        lease_s: float = 10.0,
    ) -> None:
        self.store = store
        # This process as a worker: the agents it runs are those whose lease it holds.
        self.ownership = Ownership(store, lease_s=lease_s)
        self.models = models
        self.ownership.workers_changed = models.share_limits  # limits split among workers
        self.tools = tools if tools is not None else default_tools()
        self.default_model = default_model
        self.events = EventLog(store)
        self.poll_interval_s = poll_interval_s
        self.run_id: str | None = None
        self.usage = RunUsage()  # model calls of this run: tokens, cost, per agent
        self._definitions = {d.name: d for d in agents}
        self._startup_tasks = list(startup_tasks)
        self.agents: dict[str, AgentRunner] = {}
        self._scope = TaskScope("runtime")
        self._changed = Signal()
        self._settled: dict[str, list[asyncio.Future[TaskRecord]]] = {}
        self._known: set[str] = set()
        self._orphans: dict[str, float] = {}  # seen, queued, held nowhere: since when
        self._settles = 0  # tasks settled so far (a clock for the reads below)
        self._queued_reads: Counter[int] = Counter()  # reads under way, by their start
        self._settled_at: dict[str, int] = {}  # settled while a read was under way: when
        self._started = False
        self._settle_hooks: list[Callable[[TaskRecord], None]] = []
        # The mailbox and shared resources are services like any other, started first
        # (mailbox, then resources) so that every other service and agent can rely on them.
        if mailbox is None:
            mailbox = Mailbox(store.mail(), mailbox_config)
        self.mailbox = mailbox
        if resources is None:
            from wakeful.resources.manager import ResourceManager

            resources = ResourceManager()
        self.resources: ResourceManager = resources
        # Sleep and wake: every timer and wait reads time from this clock (a FakeClock
        # in tests turns "every 30 minutes" into milliseconds).
        if clock is None:
            from wakeful.schedule.clock import RealClock

            clock = RealClock()
        self.clock: Clock = clock
        from wakeful.approvals.service import Approvals
        from wakeful.schedule.progress import Progress
        from wakeful.schedule.timers import Scheduler
        from wakeful.schedule.waits import Waits

        self.scheduler: Scheduler = scheduler if scheduler is not None else Scheduler()
        self.waits: Waits = Waits()
        self.progress: Progress = Progress()
        self.approvals = Approvals()  # tool calls a person approves before they run
        self.responder = Responder()
        self.responder.attach(self)
        self.services: list[Service] = [self.mailbox, self.resources, self.scheduler,
                                        self.waits, self.progress, self.approvals,
                                        self.responder,
                                        *services]
        # Chooses the id of each new task (replay reuses the recorded ids); None: fresh ids.
        self.task_ids: Callable[[TaskRecord], str] | None = None
        self._running_services: list[Service] = []
        from wakeful.runtime.agent_admin import AgentAdmin

        # Agents made, changed and removed at run time (stored; every worker follows).
        self.admin = AgentAdmin(self)

    def add_service(self, service: Service) -> None:
        if self._started:
            raise WakefulError(f"service {service.name!r}: add services before start()")
        self.services.append(service)

    @classmethod
    def from_project(cls, project: Project, *, tools: ToolRegistry | None = None) -> Runtime:
        """The runtime of a project folder (see :mod:`wakeful.runtime.build`)."""
        from wakeful.runtime.build import runtime_for_project

        return runtime_for_project(project, tools=tools)

    async def run_until_idle(self, tasks: Iterable[tuple[str, str]] = (),
                             timeout: float | None = None) -> list[TaskRecord]:
        """Start, queue ``tasks`` ((agent, instruction) pairs), wait until no agent has
        work left, stop; return those tasks as they ended (in order)."""
        await self.start()
        try:
            records = [await self.create_task(agent, instruction)
                       for agent, instruction in tasks]
            await self.wait_idle(timeout)
            return [await self.get_task(r.id) for r in records]
        finally:
            await self.stop()

    # lifecycle of the whole runtime --------------------------------------
    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            raise WakefulError("the runtime is already started")
        await self.store.open()
        self._started = True
        run = RunRecord(id=new_id("run"), started_at=time.time(), pid=os.getpid())
        startup = [new_task_record(s.agent, s.instruction, created_by="startup")
                   for s in self._startup_tasks if s.agent in self._definitions]
        ids = self.task_ids
        if ids is not None:  # a replay names its tasks as the recording did
            for record in startup:
                record.id = record.trace_id = ids(record)
        first_run = await self.store.begin_run(run, startup)
        if first_run:  # taken up below, not again when the agents are adopted
            self._known.update(record.id for record in startup)
        self.run_id = self.events.run_id = run.id
        self.events.emit("run.started", data={"pid": run.pid, "first_run": first_run,
                                              "worker": self.ownership.worker_id,
                                              "agents": sorted(self._definitions)})
        for service in self.services:
            await service.start(self)
            self._running_services.append(service)
        saved = await self.store.load_agents()
        await self.admin.load_stored_agents()
        for definition in self._definitions.values():
            self._make_agent(definition, saved.get(definition.name))
        self.responder.begin()
        # Take this worker's share of the agents (all of them when it is alone); their
        # interrupted tasks are requeued as each lease is taken.
        await self.ownership.start(lambda: list(self._definitions), self._adopt,
                                   self._lost, self._hand_over)
        for record in startup if first_run else ():
            self.launch_task(record)
        self.scheduler.begin()  # timers fire once the agents they start or wake run
        self.waits.begin()
        self._scope.spawn(self._watch_store(), name="runtime:watch-store")

    async def open_without_running(self) -> None:
        """Open the store and know the agents, running none of them: for a process
        that only asks (``wakeful control``): its control actions are left in the store
        for the worker that owns each agent. Close with ``store.close()``."""
        await self.store.open()
        await self.admin.load_stored_agents()
        for definition in self._definitions.values():
            self._make_agent(definition, None)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await asyncio.gather(*(agent.close() for agent in self.agents.values()))
        # Record that agents are no longer running (not a person's stop: they start
        # again with the next run). Paused and sleeping agents keep their state.
        await asyncio.gather(*(self._quietly(agent.set_state(AgentState.STOPPED, RUNTIME_STOP))
                               for agent in self.agents.values()
                               if agent.state is AgentState.RUNNING
                               and self.ownership.owns(agent.name)))
        # Hand every agent over at once: another worker may take them now.
        held = await self.ownership.stop()
        with contextlib.suppress(Exception):
            await self.ownership.release(held)
        await self.ownership.retire()
        await self._scope.aclose()
        while self._running_services:
            await self._running_services.pop().stop()
        self.events.emit("run.stopped", data={"usage": self.usage.as_dict()})
        for waiters in self._settled.values():
            for future in waiters:
                future.cancel()
        self._settled.clear()
        if self.run_id is not None:
            await self.store.end_run(self.run_id, time.time())
        await self.models.aclose()
        await self.store.close()

    @staticmethod
    async def _quietly(write: Awaitable[None]) -> None:
        with contextlib.suppress(FenceError):
            await write

    def _make_agent(self, definition: AgentDefinition, saved: AgentRecord | None) -> None:
        """An agent this runtime knows; it runs only while this worker holds its lease."""
        record = AgentRecord(name=definition.name, restarts=saved.restarts if saved else 0)
        if saved is not None:
            record.state, record.reason = saved.state, saved.reason
        self.agents[definition.name] = AgentRunner(self, definition, record)

    def owns_agent(self, name: str) -> bool:
        """Does this worker run ``name`` now (hold its lease)?"""
        return self.ownership.owns(name)

    def forget_task(self, task_id: str) -> None:
        """A task this worker saw but does not run (another claim won it)."""
        self._known.discard(task_id)

    async def _load_queued(self, agent: str | None = None,
                           agents: Collection[str] | None = None) -> None:
        for record in await self.stored_queued(agent):
            if agents is None or record.agent in agents:
                self._accept(record)

    def _accept(self, record: TaskRecord) -> None:
        """Hand a queued task from the store to its agent (once), if this worker runs it."""
        if record.id in self._known or not self.ownership.owns(record.agent):
            return
        agent = self.agents.get(record.agent)
        if agent is None:
            return
        self._known.add(record.id)
        agent.submit(record)

    async def _watch_store(self) -> None:
        """Pick up tasks queued by other processes for the agents this worker runs."""
        bell = self.store.bells.subscribe(("tasks", "commands"))
        try:
            while True:
                await bell.wait(self.poll_interval_s)
                await self._look_at_store()
        finally:
            self.store.bells.unsubscribe(bell)

    async def _look_at_store(self) -> None:
        """One look for queued tasks and commands (a doorbell rang, or it is time)."""
        try:
            await self.admin.sync_stored_agents()
            await self.apply_commands()
            queued = await self.stored_queued()
        except Exception as exc:  # the store is busy: look again next time
            log.warning("runtime: reading queued tasks or commands failed", error=repr(exc))
            return
        self._accept_queued(queued)
        self._reclaim_orphans(queued)

    def _accept_queued(self, queued: Iterable[TaskRecord]) -> None:
        """Take the queued tasks read from the store that this worker runs and has not
        seen yet, each recorded as accepted."""
        for record in queued:
            if record.id not in self._known and self.ownership.owns(record.agent):
                self.events.emit("task.accepted", agent=record.agent, task_id=record.id,
                                 data={"created_by": record.created_by})
                self._accept(record)

    def _reclaim_orphans(self, queued: Iterable[TaskRecord]) -> None:
        """A safety net: a task queued in the store that this worker counts as seen,
        although its agent here holds it nowhere (not queued, running, retrying or
        settling) for longer than a handover takes, is taken again, with a warning and
        a ``task.reclaimed`` event. Left alone it would wait for as long as this worker
        runs its agent; taking it twice is harmless (one claim wins)."""
        now = time.monotonic()
        orphans: dict[str, float] = {}
        held: dict[str, set[str]] = {}  # by agent, made once per look
        for record in queued:
            agent = self.agents.get(record.agent)
            if (record.id not in self._known or agent is None or not agent.launched
                    or not self.ownership.owns(record.agent)):
                continue
            ids = held.get(record.agent)
            if ids is None:
                ids = held[record.agent] = agent.held()
            if record.id in ids:
                continue
            since = orphans[record.id] = self._orphans.get(record.id, now)
            if now - since >= ORPHAN_GRACE_S:
                del orphans[record.id]
                log.warning("runtime: a queued task was counted as seen but held nowhere; "
                            "taking it again", task=record.id, agent=record.agent)
                self.events.emit("task.reclaimed", agent=record.agent, task_id=record.id)
                self._known.discard(record.id)
                self._accept(record)
        self._orphans = orphans

    # agents --------------------------------------------------------------
    def agent(self, name: str) -> AgentRunner:
        try:
            return self.agents[name]
        except KeyError:
            raise UnknownAgentError(name, list(self.agents)) from None

    def agent_names(self) -> Collection[str]:
        """Every agent this runtime defines (a live view: agents added later appear)."""
        return self._definitions.keys()

    def definitions(self) -> list[AgentDefinition]:
        return list(self._definitions.values())

    async def add_agent(self, definition: AgentDefinition) -> AgentRunner:
        """Create and start an agent while the runtime runs."""
        if definition.name in self.agents:
            raise WakefulError(f"an agent named {definition.name!r} already exists")
        self._definitions[definition.name] = definition
        self._make_agent(definition, None)
        await self.ownership.round()
        if self.scheduler.agent_schedules:
            await self.scheduler.register_schedules(definition)
        return self.agents[definition.name]

    def team(self) -> Team:
        """The team as a tool call sees it (what a tool context hands out)."""
        return Team(self)

    def statuses(self) -> list[AgentStatus]:
        return [
            AgentStatus(a.name, a.state, a.record.reason, a.record.restarts,
                        len(a.running_tasks), len(a.queued_tasks),
                        a.definition.max_concurrent_tasks)
            for a in self.agents.values()
        ]

