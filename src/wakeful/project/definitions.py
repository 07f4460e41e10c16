"""Pydantic models for what users write: ``wakeful.yaml`` and agent files.

These sit at the edge of the system, so they forbid unknown fields (a typo such as
``max_concurent_tasks`` is an error, not a silently ignored key) and validate every
value a user could get wrong before the runtime ever sees it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wakeful.core.timespecs import parse_duration
from wakeful.models.config import ProviderConfig
from wakeful.project.approval import ApprovalConfig, OnNewMessage
from wakeful.project.interop import A2AServerConfig, McpServerConfig, RemoteAgentConfig

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RestartPolicy(_Strict):
    """What the supervisor does when an agent's loop or one of its tasks ends.

    ``never``: a failure stays failed. ``on-failure``: a crashed agent loop, or a task
    that failed for a retryable reason (model or tool error, crash), is restarted after
    an exponential backoff, at most ``max_restarts`` times. ``always``: as on-failure,
    and a task that finished is also started again (a long-running duty such as a
    watcher), still with backoff and the ``max_restarts`` bound (``null`` = unbounded).
    """

    policy: Literal["never", "on-failure", "always"] = "on-failure"
    max_restarts: int | None = Field(default=2, ge=0)
    backoff_initial_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    backoff_factor: float = Field(default=2.0, ge=1.0)

    def backoff(self, attempt: int) -> float:
        """Delay before restart number ``attempt`` (1-based)."""
        if self.backoff_initial_s <= 0:
            return 0.0
        # Grown in logarithms, so that restart 1,024 (or a million) with no bound on
        # restarts cannot overflow a float: past the cap it is the cap.
        exponent = max(0, attempt - 1)
        if self.backoff_factor > 1 and exponent * math.log(self.backoff_factor) >= math.log(
                max(self.backoff_max_s, 1e-9) / self.backoff_initial_s):
            return float(self.backoff_max_s)
        delay = self.backoff_initial_s * self.backoff_factor ** exponent
        return float(min(delay, self.backoff_max_s))

    def allows(self, restarts_so_far: int) -> bool:
        return self.max_restarts is None or restarts_so_far < self.max_restarts


class ScheduleEntry(_Strict):
    """A timer that starts a task: exactly one of ``every``, ``cron`` or ``at``.

    ``at`` without an offset, and ``cron``, are read in ``timezone``. ``misfire`` says
    what happens to runs that came due while no runtime was running (or that are more
    than a second late): ``once`` fires once for all of them, ``skip`` drops them,
    ``all`` fires each one. ``max_runs`` ends the schedule after that many runs.
    """

    every: str | None = None
    cron: str | None = None
    at: datetime | None = None
    timezone: str = "UTC"
    instruction: str = Field(min_length=1)
    misfire: Literal["once", "skip", "all"] = "once"
    max_runs: int | None = Field(default=None, ge=1)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'UTC', "
                             "'Europe/Paris' or 'America/New_York')") from None
        return value

    @field_validator("every")
    @classmethod
    def _valid_every(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError("interval must be greater than zero")
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"not a valid cron line: {value!r} (expected e.g. '0 9 * * 1-5')")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleEntry:
        given = [k for k in ("every", "cron", "at") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a schedule needs exactly one of 'every', 'cron' or 'at' (got {given or 'none'})"
            )
        return self


class BudgetLimits(_Strict):
    """Ceilings on what a scope may spend; ``null`` means no ceiling."""

    max_tokens: int | None = Field(default=None, ge=1)  # input + output tokens
    max_cost: float | None = Field(default=None, gt=0)  # from the providers' price tables
    max_wall_s: float | None = Field(default=None, gt=0)
    max_tool_calls: int | None = Field(default=None, ge=0)


class Budget(_Strict):
    """Checked at every step boundary; an exhausted budget fails the task (not retried).

    ``task`` applies to each task on its own (wall time since it started). ``agent``
    applies to all the agent's tasks together, over every run of the project (wall
    time: the time its tasks have spent running steps, summed).
    """

    task: BudgetLimits = Field(default_factory=BudgetLimits)
    agent: BudgetLimits = Field(default_factory=BudgetLimits)


class LoopGuards(_Strict):
    """How a task reacts to a model that goes in circles or says nothing.

    The same tool call (name and arguments) ``repeated_call_limit`` times in a row is
    not run again: the model is told so. After ``max_loop_warnings`` such warnings the
    task fails (``tool_loop``). A reply with neither text nor tool calls gets a nudge;
    more than ``max_empty_replies`` in a row fail the task (``empty_reply``).
    """

    repeated_call_limit: int = Field(default=3, ge=2)
    max_loop_warnings: int = Field(default=2, ge=0)
    max_empty_replies: int = Field(default=2, ge=0)


class SpawnGrant(_Strict):
    """``can_spawn:`` as limits: how many agents this one may make (beside the
    project's ``agents.max_spawned_per_agent``)."""

    max_agents: int | None = Field(default=None, ge=1)


class AgentDefinition(_Strict):
    """One agent as a user writes it in ``agents/NAME.yaml`` or ``agents/NAME.md``."""

    name: str = Field(pattern=NAME_PATTERN)
    role: str = ""
    instructions: str = ""
    model: str | None = None
    tools: list[str] = Field(default_factory=list)
    max_concurrent_tasks: int = Field(default=4, ge=1, le=10_000)
    max_steps: int = Field(default=50, ge=1)
    # Answer people's mail (1-1, and posts in its channels) in a task of its own.
    answer_mail: bool = True
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    schedule: list[ScheduleEntry] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    guards: LoopGuards = Field(default_factory=LoopGuards)
    # Whose status and tasks this agent may see with the progress tools (it always sees
    # its own); ["*"]: every agent, as a monitor does.
    can_watch: list[str] = Field(default_factory=list)
    # Tool calls a person approves before they run (see wakeful.project.approval).
    approval: ApprovalConfig = Field(default_factory=list)
    # A person's new message while a task answering them still runs.
    on_new_message: OnNewMessage = "merge"
    # Which agents this agent may act on with the control tools (pause_agent,
    # cancel_task...); ["*"]: every other agent.
    can_control: list[str] = Field(default_factory=list)
    # May it make agents with spawn_agent (true, or limits of its own)?
    can_spawn: bool | SpawnGrant = False

    @field_validator("can_watch", "can_control")
    @classmethod
    def _valid_watch(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and not re.match(NAME_PATTERN, name):
                raise ValueError(f"{name!r} is not an agent name (or '*' for every agent)")
        return value

    def may_watch(self, agent: str) -> bool:
        return agent == self.name or "*" in self.can_watch or agent in self.can_watch

    def may_control(self, agent: str) -> bool:
        """Named, or under "*" (which never includes the agent itself: it would stop
        the very task that asked)."""
        return agent in self.can_control or ("*" in self.can_control and agent != self.name)

    @property
    def spawn_grant(self) -> SpawnGrant | None:
        if isinstance(self.can_spawn, SpawnGrant):
            return self.can_spawn
        return SpawnGrant() if self.can_spawn else None

    def system_prompt(self) -> str:
        parts = [f"You are {self.name}" + (f", {self.role}." if self.role else ".")]
        if self.instructions.strip():
            parts.append(self.instructions.strip())
        return "\n\n".join(parts)


class AgentLimits(_Strict):
    """``agents:`` in ``wakeful.yaml``: bounds on agents made at run time."""

    max: int | None = Field(default=None, ge=1)  # agents in the team, all kinds
    max_spawned_per_agent: int | None = Field(default=5, ge=0)  # live children of one agent
    reload_files: bool = True  # reload agent files edited while the team runs
    reload_interval_s: float = Field(default=1.0, gt=0)


class StartupTask(_Strict):
    """A task queued the first time a project runs (when its store is new)."""

    agent: str = Field(pattern=NAME_PATTERN)
    instruction: str = Field(min_length=1)


class StoreConfig(_Strict):
    """Where state lives. SQLite paths are relative to the project folder."""

    url: str = "sqlite:///wakeful.db"
    # NORMAL survives a killed process (WAL); FULL also survives power loss.
    synchronous: Literal["normal", "full"] = "normal"


class ResourcesConfig(_Strict):
    """Shared resources: how long short operations may auto-pause, and lock leases."""

    # A short operation on a busy resource waits at most this long, then fails clearly.
    auto_pause_timeout_s: float = Field(default=30.0, gt=0)
    default_lease_s: float = Field(default=60.0, gt=0)
    max_lease_s: float = Field(default=3600.0, gt=0)
    # The longest an acquire_lock call may ask to wait.
    max_lock_wait_s: float = Field(default=600.0, ge=0)
    # How often a waiter rechecks the store for locks freed by other processes.
    poll_interval_s: float = Field(default=0.25, gt=0)

    @model_validator(mode="after")
    def _lease_bounds(self) -> ResourcesConfig:
        if self.default_lease_s > self.max_lease_s:
            raise ValueError(f"default_lease_s ({self.default_lease_s}) is larger than "
                             f"max_lease_s ({self.max_lease_s})")
        return self


class ChannelConfig(_Strict):
    """A channel (group conversation) that exists whenever the project runs."""

    name: str = Field(pattern=NAME_PATTERN)
    members: list[str] = Field(default_factory=list)
    topic: str = ""
    # Who answers a person's post that names no agent with @name: every member agent
    # that answers mail ("everyone"), or one named agent (a channel with a host). A post
    # that @mentions agents always goes to those agents only.
    answer: str = Field("everyone", pattern=NAME_PATTERN)

    @field_validator("members")
    @classmethod
    def _valid_members(cls, value: list[str]) -> list[str]:
        from wakeful.core.mail import parse_member

        for member in value:
            parse_member(member)  # raises ValueError naming what a member may be
        return value


class MailboxConfig(_Strict):
    """``mailbox:`` in ``wakeful.yaml``: mail limits and delivery guarantees.

    A mail handed to a reader and not acknowledged within ``visibility_timeout_s`` (its
    handler crashed or forgot) is delivered again; after ``max_deliveries`` deliveries
    it goes to the dead-letter box, where a person can inspect it and send it again.
    """

    max_subject_chars: int = Field(default=200, ge=1)
    max_body_chars: int = Field(default=65_536, ge=1)
    max_payload_bytes: int = Field(default=65_536, ge=2)
    visibility_timeout_s: float = Field(default=30.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    request_timeout_s: float = Field(default=120.0, gt=0)
    helpers_channel: str = Field(default="helpers", pattern=NAME_PATTERN)
    channels: list[ChannelConfig] = Field(default_factory=list)
    # Every send is already a row of the mail table (who, to whom, when, correlation);
    # true also copies each one into the event log, at about a fifth of the throughput.
    log_every_send: bool = False


class ProjectConfig(_Strict):
    """``wakeful.yaml``: the project as a whole."""

    name: str = Field(default="wakeful-project", min_length=1)
    default_model: str = "scripted"
    agents_dir: str = "agents"
    agents: AgentLimits = Field(default_factory=AgentLimits)
    scripts_dir: str = "scripts"
    # The folder file tools work in (relative to the project); they cannot leave it.
    workspace: str = Field(default="workspace", min_length=1)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    startup_tasks: list[StartupTask] = Field(default_factory=list)
    poll_interval_s: float = Field(default=0.5, gt=0)
    # How long a worker's lease on an agent lasts unless renewed (renewed every third of
    # it): a worker that stops renewing (killed, stalled) loses its agents after this.
    worker_lease_s: float = Field(default=10.0, ge=0.5, le=3600)
    # Model endpoints by name: ``model: local:llama`` uses ``providers.local``.
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in value:
            if name == "scripted" or not re.match(NAME_PATTERN, name):
                raise ValueError(f"provider name {name!r}: use lower case letters, digits, "
                                 "'-' and '_' ('scripted' is reserved)")
        return value
    mailbox: MailboxConfig = Field(default_factory=MailboxConfig)
    # Open protocols (see wakeful.project.interop): serve agents over A2A, call remote
    # A2A agents, use tools of MCP servers.
    a2a: A2AServerConfig = Field(default_factory=A2AServerConfig)
    remote_agents: list[RemoteAgentConfig] = Field(default_factory=list)
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_interop_names(self) -> ProjectConfig:
        for what, names in (("remote agent", [r.name for r in self.remote_agents]),
                            ("MCP server", [m.name for m in self.mcp_servers])):
            seen = {n for n in names if names.count(n) > 1}
            if seen:
                raise ValueError(f"{what} names must be unique; repeated: {sorted(seen)}")
        return self
