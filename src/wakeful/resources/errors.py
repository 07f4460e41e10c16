"""Errors of the resource layer.

Each one is written for the model that made the tool call (it is shown to it as the
tool's result) and for the person reading the event log: it names the resource, the
tasks involved and what to do next.
"""

from __future__ import annotations

from wakeful.errors import WakefulError


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
