"""OpenTelemetry as relaychain's callback layer: span and metric middleware, exporters, set-up."""

from observability.jsonl import JsonLinesSpanExporter, read_spans
from observability.metrics import MetricsMiddleware
from observability.setup import ObservabilitySettings, Telemetry, setup_telemetry
from observability.tracing import TracingMiddleware

__all__ = [
    "JsonLinesSpanExporter",
    "MetricsMiddleware",
    "ObservabilitySettings",
    "Telemetry",
    "TracingMiddleware",
    "read_spans",
    "setup_telemetry",
]
