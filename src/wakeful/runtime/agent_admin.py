"""Agents made, changed and removed while the team runs (``runtime.admin``).

An agent made at run time (API, CLI, a UI form, ``spawn_agent``) is stored in the
store (:mod:`wakeful.store.agent_definitions`), so it survives a restart and every
worker runs it: each worker compares the stored versions with what it runs every
``poll_interval_s`` and applies what changed. A change restarts the agent's loop
with the new definition (its running tasks are interrupted and resumed, as after a
restart); a removal is carried out by the worker that owns the agent (its running
tasks finish, or are cancelled, as the remover chose; its queued tasks are
cancelled) and by every other worker simply forgetting it.

Agents defined in files are changed by editing their file (see
:mod:`wakeful.runtime.reload`); the API refuses to change or remove them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
import yaml
from pydantic import ValidationError

from wakeful.core.states import AgentState
from wakeful.core.stored_agents import Removal, StoredAgent
from wakeful.core.validation import describe_validation_error
from wakeful.errors import AccessDeniedError, ConfigError, UnknownAgentError, WakefulError
from wakeful.project.definitions import AgentDefinition, AgentLimits
from wakeful.runtime.agent import AgentRunner

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime
    from wakeful.store.agent_definitions import StoredAgents

log = structlog.get_logger("wakeful.agents")

REMOVALS: tuple[Removal, ...] = ("finish", "cancel")


def parse_definition(fields: Mapping[str, Any], where: str) -> AgentDefinition:
    """An agent definition from the fields of an agent file; ConfigError naming the
    field otherwise."""
    try:
        return AgentDefinition.model_validate(dict(fields))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(where, exc, AgentDefinition)) from None


def export_yaml(definition: AgentDefinition) -> str:
    """The definition as an agent file (fields left at their defaults are left out)."""
    data = {"name": definition.name,
            **definition.model_dump(mode="json", exclude_defaults=True, exclude={"name"})}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


class AgentAdmin:
    """Create, change, remove, spawn and export agents; follow the store's changes."""

    def __init__(self, runtime: Runtime, limits: AgentLimits | None = None) -> None:
        self.rt = runtime
        self.limits = limits or AgentLimits()
        # stored agent -> the version this worker last applied (negative: removed then)
        self._stored_versions: dict[str, int] = {}
        self._mine: set[str] = set()  # agents this runtime runs from the store

    def _stored_family(self) -> StoredAgents | None:
        from wakeful.store.agent_definitions import stored_agents

        try:
            return stored_agents(self.rt.store)
        except WakefulError:  # a backend without the family: files only
            return None

    def stored_names(self) -> set[str]:
        """Agents this runtime runs that were made at run time (not from a file)."""
        return set(self._mine)

    # the store -> this worker ---------------------------------------------------
    async def load_stored_agents(self) -> None:
        """At start: add the live agents made at run time (a file of the same name
        wins; the clash is recorded)."""
        family = self._stored_family()
        if family is None:
            return
        for stored in await family.all():
            if stored.removed_at is not None:
                self._stored_versions[stored.name] = -stored.version
                continue
            self._stored_versions[stored.name] = stored.version
            if stored.name in self.rt._definitions:
                self.rt.events.emit("agent.definition_clash", agent=stored.name, data={
                    "why": "an agent file defines this name too; the file wins"})
                continue
            try:
                definition = parse_definition(stored.definition, f"stored agent {stored.name}")
            except ConfigError as exc:
                self.rt.events.emit("agent.load_failed", agent=stored.name,
                                    data={"error": str(exc)})
                continue
            self.rt._definitions[stored.name] = definition
            self._mine.add(stored.name)

    async def sync_stored_agents(self) -> None:
        """Apply what other processes created, changed or removed."""
        family = self._stored_family()
        if family is None:
            return
        for stored in await family.all():
            known = self._stored_versions.get(stored.name)
            version = -stored.version if stored.removed_at is not None else stored.version
            if known == version:
                continue
            await self._apply_stored(stored)

    async def _apply_stored(self, stored: StoredAgent) -> None:
        name = stored.name
        if stored.removed_at is not None:
            self._stored_versions[name] = -stored.version
            if name in self._mine:
                self._mine.discard(name)
                await self._remove_live(name, stored.removal or "finish")
            return
        self._stored_versions[name] = stored.version
        if name in self._file_agents():
            return  # a file agent of that name wins
        try:
            definition = parse_definition(stored.definition, f"stored agent {name}")
        except ConfigError as exc:
            self.rt.events.emit("agent.load_failed", agent=name, data={"error": str(exc)})
            return
        self._mine.add(name)
        if name in self.rt.agents:
            if self.rt.agents[name].definition != definition:
                await self.replace_agent(definition)
        else:
            await self.rt.add_agent(definition)

    def _file_agents(self) -> set[str]:
        return set(self.rt._definitions) - self._mine

    # making and changing ----------------------------------------------------------
    def _check_new(self, definition: AgentDefinition) -> None:
        if definition.name in self.rt.agents:
            raise WakefulError(f"an agent named {definition.name!r} already exists")
        limit = self.limits.max
        if limit is not None and len(self.rt._definitions) >= limit:
            raise WakefulError(f"the team has {len(self.rt._definitions)} agents, the most "
                               f"wakeful.yaml allows (agents.max: {limit})")
        self._check_parts(definition)

    def _check_parts(self, definition: AgentDefinition) -> None:
        unknown = sorted(set(definition.tools) - set(self.rt.tools.names()))
        if unknown:
            raise WakefulError(f"agent {definition.name!r}: unknown tools {unknown} (known "
                               f"tools: {', '.join(sorted(self.rt.tools.names()))})")
        self.rt.models.get(definition.model or self.rt.default_model)  # a clear error if bad

    async def create_agent(self, fields: Mapping[str, Any] | AgentDefinition, *,
                           by: str, parent: str | None = None) -> AgentDefinition:
        """Make an agent now, store it, and start it (on whichever worker takes it)."""
        definition = fields if isinstance(fields, AgentDefinition) else parse_definition(
            fields, "agent")
        self._check_new(definition)
        family = self._require_family()
        stored = await family.save(StoredAgent(definition.name, _fields(definition), by,
                                               parent), create=True)
        self._stored_versions[definition.name] = stored.version
        self._mine.add(definition.name)
        await self.rt.add_agent(definition)
        self.rt.events.emit("agent.created", agent=definition.name,
                         data={"by": by, "parent": parent, "version": stored.version})
        return definition

    async def update_agent(self, name: str, fields: Mapping[str, Any], *, by: str
                           ) -> AgentDefinition:
        """Change an agent made at run time (all its fields, as in its file)."""
        self._require_stored(name)
        definition = parse_definition({**dict(fields), "name": name}, f"agent {name}")
        self._check_parts(definition)
        stored = await self._require_family().save(
            StoredAgent(name, _fields(definition), by), create=False)
        self._stored_versions[name] = stored.version
        await self.replace_agent(definition)
        self.rt.events.emit("agent.updated", agent=name, data={"by": by,
                                                           "version": stored.version})
        return definition

    async def remove_agent(self, name: str, *, running: Removal = "finish",
                           by: str) -> list[str]:
        """Remove an agent made at run time; its running tasks finish or are cancelled
        (``running``), its queued tasks are cancelled. Returns the tasks cancelled."""
        if running not in REMOVALS:
            raise WakefulError(f"running: {running!r} is not one of {', '.join(REMOVALS)}")
        self._require_stored(name)
        stored = await self._require_family().remove(name, running)
        if stored is None:
            raise UnknownAgentError(name, list(self.rt.agents))
        self._stored_versions[name] = -stored.version
        self._mine.discard(name)
        self.rt.events.emit("agent.removed", agent=name, data={"by": by, "running": running})
        return await self._remove_live(name, running)

    def _require_family(self) -> StoredAgents:
        family = self._stored_family()
        if family is None:
            raise WakefulError("this store cannot keep agents made at run time")
        return family

    def _require_stored(self, name: str) -> None:
        self.rt.agent(name)
        if name not in self.stored_names():
            raise WakefulError(f"agent {name!r} is defined by a file in the project's agents "
                               "folder: edit or delete the file (it is reloaded)")

    async def remove_file_agent(self, name: str) -> None:
        """An agent whose file was deleted: removed here, its running tasks finish."""
        await self._remove_live(name, "finish")

    # at run time, in this worker ---------------------------------------------------
    async def replace_agent(self, definition: AgentDefinition) -> None:
        """Run an agent with a new definition: its loop restarts (running tasks are
        interrupted and resumed), its schedules follow the new ones."""
        name = definition.name
        old = self.rt.agent(name)
        owned = self.rt.ownership.owns(name)
        await old.close()
        for record in old.take_queue():
            self.rt._known.discard(record.id)
        new = AgentRunner(self.rt, definition, old.record)
        new.take_over(old)
        self.rt._definitions[name] = definition
        self.rt.agents[name] = new
        if owned and new.state in (AgentState.RUNNING, AgentState.PAUSED,
                                   AgentState.SLEEPING):
            new.launch(self.rt._scope)
            await self.rt._load_queued(agent=name)
        if self.rt.scheduler.agent_schedules:
            await self.rt.scheduler.register_schedules(definition)
        self.rt.changed()

    async def _remove_live(self, name: str, running: Removal) -> list[str]:
        """Take an agent out of this worker: cancel its queued (and, with ``cancel``,
        running) tasks if this worker owns it, let running ones finish otherwise."""
        runner = self.rt.agents.get(name)
        if runner is None:
            return []
        definition = self.rt._definitions.pop(name, runner.definition)
        if self.rt.scheduler.agent_schedules:
            await self.rt.scheduler.register_schedules(definition.model_copy(
                update={"schedule": []}))
        if not self.rt.ownership.owns(name):
            await self._drop_runner(name)
            return []
        cancelled: list[str] = []
        for record in list(runner.queued_tasks):
            await self._quiet_cancel(record.id, cancelled)
        if running == "cancel":
            for record in list(runner.running_tasks):
                await self._quiet_cancel(record.id, cancelled)
            await self._drop_runner(name)
        else:
            self.rt._scope.spawn(self._finish_then_drop(name, [r.id for r in
                                                            runner.running_tasks]),
                              name=f"remove:{name}")
        return cancelled

    async def _quiet_cancel(self, task_id: str, cancelled: list[str]) -> None:
        try:
            await self.rt.cancel_task(task_id)
            cancelled.append(task_id)
        except WakefulError as exc:  # ended meanwhile
            log.info("task of a removed agent not cancelled", task=task_id, error=str(exc))

    async def _finish_then_drop(self, name: str, running: list[str]) -> None:
        for task_id in running:
            with contextlib.suppress(WakefulError):
                await self.rt.wait_task(task_id)
        await self._drop_runner(name)

    async def _drop_runner(self, name: str) -> None:
        runner = self.rt.agents.pop(name, None)
        if runner is None:
            return
        await runner.close()
        for record in runner.take_queue():
            self.rt._known.discard(record.id)
        self.rt.mailbox.forget(name)
        epoch = self.rt.ownership.held.pop(name, None)
        if epoch is not None:
            with contextlib.suppress(Exception):
                await self.rt.ownership.release({name: epoch})
        self.rt.events.emit("agent.dropped", agent=name,
                            data={"worker": self.rt.ownership.worker_id})
        self.rt.changed()

    # spawning and exporting ---------------------------------------------------------
    async def spawn_agent(self, parent: str, fields: dict[str, Any], *, by: str
                          ) -> AgentDefinition:
        """Make an agent on behalf of agent ``parent`` (``spawn_agent``): only with the
        parent's model and tools, no grant it lacks, within the limits."""
        mine = self.rt.agent(parent).definition
        grant = mine.spawn_grant
        if grant is None:
            raise AccessDeniedError(f"agent {parent!r} may not spawn agents (grant can_spawn "
                                    "in its agent file)")
        own_model = mine.model or self.rt.default_model
        fields = {**fields, "model": fields.get("model") or own_model}
        child = parse_definition(fields, "spawn_agent")
        if (child.model or self.rt.default_model) != own_model:
            raise AccessDeniedError(f"a spawned agent may use only its parent's model "
                                    f"({own_model!r}), not {child.model!r}")
        extra = sorted(set(child.tools) - set(mine.tools))
        if extra:
            raise AccessDeniedError(f"a spawned agent may use only tools its parent "
                                    f"{parent!r} has; it lacks {extra}")
        if child.can_control or child.can_watch or child.spawn_grant is not None:
            raise AccessDeniedError("a spawned agent gets no grants (can_watch, "
                                    "can_control, can_spawn)")
        family = self._require_family()
        spawned = await family.count_spawned(parent)
        for bound, what in ((self.limits.max_spawned_per_agent,
                             "agents.max_spawned_per_agent in wakeful.yaml"),
                            (grant.max_agents, f"can_spawn.max_agents of {parent!r}")):
            if bound is not None and spawned >= bound:
                raise AccessDeniedError(f"agent {parent!r} has spawned {spawned} agents, "
                                        f"the most {what} allows")
        return await self.create_agent(child, by=by, parent=parent)

    def export_agent(self, name: str) -> str:
        return export_yaml(self.rt.agent(name).definition)

    async def stored_agent(self, name: str) -> StoredAgent | None:
        family = self._stored_family()
        return None if family is None else await family.get(name)

    async def wait_removed(self, name: str) -> None:
        """Wait until this worker runs ``name`` no more (a removal that lets tasks
        finish takes as long as they do)."""
        while name in self.rt.agents:
            await self.rt.wait_changed()


def _fields(definition: AgentDefinition) -> dict[str, Any]:
    return definition.model_dump(mode="json", exclude_defaults=True) | {
        "name": definition.name}


__all__ = ["AgentAdmin", "export_yaml", "parse_definition"]
