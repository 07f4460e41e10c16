"""Whether OpenTelemetry tracing is asked for (without importing OpenTelemetry, an
optional dependency)."""

from __future__ import annotations

import os


def tracing_requested() -> bool:
    """Tracing is on when an OTLP endpoint is configured the standard way."""
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
