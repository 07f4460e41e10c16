"""Structured logs from the event stream (structlog).

A log line is an event rendered, never a separate record, so logs and the event log
cannot disagree. JSON lines suit log shippers; the console renderer suits people.
"""

from __future__ import annotations

from typing import Any, TextIO

import structlog

from wakeful.core.records import Event
from wakeful.observe.events import EventLog

_SKIP = frozenset({"model.token"})
_LEVELS = {"failed": "error", "error": "error", "crashed": "error", "refused": "warning",
           "invalid_args": "warning", "dead_lettered": "warning", "deadlock": "error"}


def _level(event_type: str) -> str:
    suffix = event_type.rsplit(".", 1)[-1]
    return _LEVELS.get(suffix, "info")


class LogSink:
    """An event-log listener writing one structured log entry per event."""

    def __init__(self, stream: TextIO, json: bool = True) -> None:
        renderer: Any = (structlog.processors.JSONRenderer() if json
                         else structlog.dev.ConsoleRenderer(colors=False))
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(stream),
            processors=[structlog.processors.add_log_level, renderer],
        )

    def __call__(self, event: Event) -> None:
        if event.type in _SKIP:
            return
        fields = {k: v for k, v in event.data.items() if k != "traceback"}
        if "traceback" in event.data:
            fields["traceback"] = event.data["traceback"]
        getattr(self._log, _level(event.type))(
            event.type, ts=round(event.ts, 6), run_id=event.run_id, agent=event.agent,
            task_id=event.task_id, correlation_id=event.correlation_id,
            causation_id=event.causation_id, **fields)


def install_logs(events: EventLog, stream: TextIO, json: bool = True) -> LogSink:
    sink = LogSink(stream, json=json)
    events.add_listener(sink)
    return sink
