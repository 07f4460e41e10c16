"""How a provider reports what happens inside one model call (retries, throttling).

A provider is shared by every task that names it and knows nothing of tasks or
agents; the task loop does. The task loop therefore installs a reporter in a context
variable for the duration of its call, and the provider reports through it: events
land in the event log attributed to the right agent and task, and the model
interface stays ``complete(messages, tools)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Reporter = Callable[[str, dict[str, Any]], None]

_reporter: ContextVar[Reporter | None] = ContextVar("wakeful_model_call_reporter",
                                                    default=None)


@contextmanager
def reporting_to(reporter: Reporter) -> Iterator[None]:
    """Send events reported by model calls made inside this block to ``reporter``."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


def report(event_type: str, **data: Any) -> None:
    """Record an event about the current model call (dropped if nobody listens)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(event_type, data)
