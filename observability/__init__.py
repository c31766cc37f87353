"""OpenTelemetry as relaychain's callback layer: span and metric middleware, exporters, set-up."""

from relaychain.observability.jsonl import JsonLinesSpanExporter, JsonLinesSpanProcessor, read_spans
from relaychain.observability.metrics import MetricsMiddleware
from relaychain.observability.setup import ObservabilitySettings, Telemetry, setup_telemetry
from relaychain.observability.tracing import TracingMiddleware

__all__ = [
    "JsonLinesSpanExporter",
    "JsonLinesSpanProcessor",
    "MetricsMiddleware",
    "ObservabilitySettings",
    "Telemetry",
    "TracingMiddleware",
    "read_spans",
    "setup_telemetry",
]
