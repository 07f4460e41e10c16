"""Errors the runtime raises on purpose.

Every error a user can cause carries enough context to act on without reading a
traceback: which file, agent, task or field, and what was expected. The CLI prints
``str(error)`` as its single line of output, so messages are written for people.
"""

from __future__ import annotations


class WakefulError(Exception):
    """Base class: anything the CLI may show as one clear line."""


class ConfigError(WakefulError):
    """A project or agent file is missing, malformed or invalid."""


class UnknownAgentError(WakefulError):
    """An agent name that the project does not define."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown agent {name!r} (known agents: {listed})")
        self.name = name


class UnknownTaskError(WakefulError):
    """A task id that the store does not hold."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"unknown task {task_id!r}")
        self.task_id = task_id


class IllegalTransitionError(WakefulError):
    """A lifecycle change that the state machine does not allow."""

    def __init__(self, kind: str, subject: str, current: str, target: str, allowed: list[str]):
        options = ", ".join(allowed) or "nothing (terminal state)"
        super().__init__(
            f"{kind} {subject!r} cannot go from {current!r} to {target!r}; "
            f"from {current!r} it may go to: {options}"
        )
        self.current = current
        self.target = target


class ModelError(WakefulError):
    """A model provider failed to answer (after its own retries, if any)."""


class StoreError(WakefulError):
    """The store could not be opened or migrated."""


class OutcomeUnknownError(StoreError):
    """A write whose commit's outcome was lost (its connection dropped during COMMIT,
    or the store closed mid-write): it may or may not be stored, all of it or none.
    Whoever made it reads the store again, or repeats it if it is keyed."""


class FenceError(StoreError):
    """A write by a worker that no longer owns the agent: another worker took its lease
    (a higher epoch). The write was refused in its own transaction; nothing landed."""

    def __init__(self, agent: str, owner: str, epoch: int, what: str) -> None:
        super().__init__(f"{what}: refused, worker {owner} no longer owns agent {agent!r} "
                         f"(its lease epoch {epoch} was taken over)")
        self.agent = agent


class ConflictError(StoreError):
    """A write that would duplicate what a key already names (a delegation under the
    same key); the whole transaction it was part of was rolled back."""


class MailError(WakefulError):
    """Mail that cannot be sent or handled: malformed, oversized, to nobody known."""


class MailTooLargeError(MailError):
    """A mail over one of the configured size limits (``mailbox:`` in wakeful.yaml)."""


class MailAccessError(MailError):
    """A reader asked for mail or a channel that is not theirs; refused and recorded."""


class MailTimeoutError(MailError, TimeoutError):
    """No matching mail (a reply, a delegated result, help) arrived in time."""


class ScheduleError(WakefulError):
    """A timer or wait that cannot be set: a bad date, interval, cron line, time zone or
    event, or one the caller may not touch."""


class AccessDeniedError(WakefulError):
    """A monitoring request for an agent or task the caller was not granted; refused and
    recorded."""


# The resource layer's errors: each is written for the model that made the tool call (it
# is shown to it as the tool's result) and for the person reading the event log.
class ResourceError(WakefulError):
    """A resource name, path or lock request that cannot be honoured."""


class PathEscapeError(ResourceError):
    """A workspace path that points outside the workspace folder."""


class WaitTimeoutError(ResourceError):
    """An operation waited longer than its bound for a resource."""


class DeadlockError(ResourceError):
    """This task's wait closed a cycle of waits; it was chosen to give up."""

    def __init__(self, message: str, cycle: list[str], tokens: list[int] | None = None) -> None:
        super().__init__(message)
        self.cycle = cycle
        self.tokens = tokens or []  # the victim's locks that others in the cycle wait for


class StaleTokenError(ResourceError):
    """A fencing token that no longer stands for a live lock of this task."""
