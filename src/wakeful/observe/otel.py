"""OpenTelemetry spans, built from the event stream.

Spans are derived from events rather than by instrumenting the task loop, so tracing
adds nothing when it is off (no listener is installed) and can never disagree with the
event log when it is on. A task span covers one run of a task (from running to done,
failed, cancelled or interrupted); model and tool calls are its children, placed in
time from the latencies their events carry. Work that crosses agents is connected by
span links: a task started by another task (delegation) links to its parent's span,
and a task or mail caused by a mail links to the span that sent it.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from wakeful.core.records import Event
from wakeful.observe.events import EventLog

_FINAL = {"done", "failed", "cancelled", "queued"}
_MAX_REMEMBERED = 100_000


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


class SpanBuilder:
    """An event-log listener that turns events into spans on ``tracer``."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self._open: dict[str, Span] = {}  # task id -> its running span
        self._contexts: dict[str, SpanContext] = {}  # task or mail id -> span that made it
        self._parents: dict[str, str] = {}  # task id -> the task or mail that caused it

    def __call__(self, event: Event) -> None:
        if event.type == "task.created" and event.task_id:
            cause = event.causation_id or event.data.get("parent_id")
            if cause:
                self._parents[event.task_id] = cause
        elif event.type == "task.state" and event.task_id:
            self._task_state(event)
        elif event.type in ("model.call", "model.error") or event.type.startswith("tool."):
            self._child(event)
        elif event.type.startswith("mail.") and event.task_id:
            mail_id = event.data.get("mail_id") or event.data.get("id")
            span = self._open.get(event.task_id)
            if span is not None:
                span.add_event(event.type, {k: str(v) for k, v in event.data.items()},
                               timestamp=_ns(event.ts))
                if mail_id and event.type == "mail.sent":
                    self._remember(str(mail_id), span.get_span_context())

    def _remember(self, key: str, context: SpanContext) -> None:
        if len(self._contexts) >= _MAX_REMEMBERED:
            self._contexts.pop(next(iter(self._contexts)))
        self._contexts[key] = context

    def _task_state(self, event: Event) -> None:
        task_id = event.task_id
        assert task_id is not None
        target = event.data.get("to")
        span = self._open.get(task_id)
        if target == "running" and span is None:
            links = []
            cause = self._parents.get(task_id)
            if cause and cause in self._contexts:
                links.append(Link(self._contexts[cause], {"wakeful.link": "caused-by"}))
            span = self.tracer.start_span(
                f"task {event.agent}", kind=SpanKind.INTERNAL, start_time=_ns(event.ts),
                links=links, attributes={
                    "wakeful.agent": event.agent or "", "wakeful.task_id": task_id,
                    "wakeful.trace_id": event.correlation_id or task_id})
            self._open[task_id] = span
            self._remember(task_id, span.get_span_context())
        elif span is not None and target in _FINAL:
            if target == "failed":
                span.set_status(Status(StatusCode.ERROR, str(event.data.get("error", ""))))
                span.set_attribute("wakeful.error_kind", str(event.data.get("error_kind", "")))
            span.set_attribute("wakeful.outcome", str(target))
            span.end(end_time=_ns(event.ts))
            del self._open[task_id]
        elif span is not None and target == "waiting":
            span.add_event("waiting", {"reason": str(event.data.get("reason", ""))},
                           timestamp=_ns(event.ts))

    def _child(self, event: Event) -> None:
        parent = self._open.get(event.task_id or "")
        if parent is None:
            return
        latency = float(event.data.get("latency_ms", 0.0)) / 1000
        name = (f"model {event.data.get('model', '')}".strip() if event.type.startswith("model.")
                else f"tool {event.data.get('tool', '')}")
        attributes: dict[str, Any] = {
            f"wakeful.{k}": v if isinstance(v, (str, int, float, bool)) else str(v)
            for k, v in event.data.items() if k not in ("traceback", "result", "arguments")}
        span = self.tracer.start_span(
            name, context=trace.set_span_in_context(parent), start_time=_ns(event.ts - latency),
            attributes=attributes)
        if event.type in ("model.error", "tool.error", "tool.refused", "tool.invalid_args"):
            span.set_status(Status(StatusCode.ERROR, str(event.data.get("error")
                                                         or event.data.get("result", ""))))
        span.end(end_time=_ns(event.ts))

    def close(self) -> None:
        """End spans still open (the runtime is stopping)."""
        for span in self._open.values():
            span.set_attribute("wakeful.outcome", "interrupted")
            span.end()
        self._open.clear()


def install_tracing(events: EventLog, exporter: SpanExporter | None = None,
                    service_name: str = "wakeful") -> tuple[TracerProvider, SpanBuilder]:
    """Export spans for ``events``: to ``exporter``, else OTLP over HTTP (configured by the
    standard ``OTEL_EXPORTER_OTLP_*`` variables)."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    builder = SpanBuilder(provider.get_tracer("wakeful"))
    events.add_listener(builder)
    return provider, builder
