"""Who is doing the current work, carried implicitly through ``contextvars``.

Each task loop runs in its own asyncio task, so values set when it starts are seen by
everything it calls (model providers, tools, the mailbox) and by nothing else. That is
how events get their trace and cause, and how a task started from inside another task
(delegation) is linked to it, without every call site passing ids along.
"""

from __future__ import annotations

from contextvars import ContextVar

CURRENT_TASK: ContextVar[str | None] = ContextVar("wakeful_current_task", default=None)
"""The id of the task whose loop is running this code, if any."""

CURRENT_TRACE: ContextVar[str | None] = ContextVar("wakeful_current_trace", default=None)
"""The trace (root task id of the causal tree) the current work belongs to."""

