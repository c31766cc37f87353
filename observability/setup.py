"""Tracer and meter providers from settings: exporters, resource, and the user's own span processors."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from pydantic import BaseModel, ConfigDict, Field

from relaychain.observability.jsonl import JsonLinesSpanProcessor

Exporter = Literal["console", "jsonl", "otlp-http", "otlp-grpc", "none"]


class ObservabilitySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    service_name: str = "relaychain"
    exporters: tuple[Exporter, ...] = ("jsonl",)
    jsonl_path: Path | None = Field(default=None, description="Defaults to <data_dir>/traces.jsonl.")
    otlp_endpoint: str | None = Field(default=None, description="Collector URL; OTEL_EXPORTER_OTLP_ENDPOINT otherwise.")
    metrics_exporters: tuple[Literal["console", "otlp-http", "otlp-grpc", "none"], ...] = ("none",)
    metrics_interval_s: float = 15.0
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of traces recorded (decided at the root, followed by every hop)."
    )
    record_content: bool = Field(default=False, description="Put prompt and completion text on spans.")
    span_processors: tuple[str, ...] = Field(default=(), description="`module:Class` user callbacks (SpanProcessor).")


class Telemetry:
    """The providers one process uses; `shutdown()` flushes exporters."""

    def __init__(
        self, tracer_provider: TracerProvider, meter_provider: MeterProvider, *, metrics_enabled: bool = True
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.metrics_enabled = metrics_enabled

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(settings: ObservabilitySettings, *, jsonl_default: Path) -> Telemetry:
    resource = Resource.create({"service.name": settings.service_name, **settings.resource_attributes})
    tracer_provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
    for exporter in settings.exporters:
        if exporter == "jsonl":
            tracer_provider.add_span_processor(JsonLinesSpanProcessor(settings.jsonl_path or jsonl_default))
            continue
        span_exporter = _span_exporter(exporter, settings)
        if span_exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=500))
    for path in settings.span_processors:
        tracer_provider.add_span_processor(_load_processor(path))
    readers = [r for r in (_metric_reader(name, settings) for name in settings.metrics_exporters) if r is not None]
    return Telemetry(
        tracer_provider, MeterProvider(resource=resource, metric_readers=readers), metrics_enabled=bool(readers)
    )


def _span_exporter(name: Exporter, settings: ObservabilitySettings) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        endpoint = f"{settings.otlp_endpoint.rstrip('/')}/v1/traces" if settings.otlp_endpoint else None
        return HttpExporter(endpoint=endpoint)
    if name == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=settings.otlp_endpoint)
    return None


def _metric_reader(name: str, settings: ObservabilitySettings) -> MetricReader | None:
    interval = int(settings.metrics_interval_s * 1000)
    if name == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=interval)
    if name == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetrics,
        )

        endpoint = f"{settings.otlp_endpoint.rstrip('/')}/v1/metrics" if settings.otlp_endpoint else None
        return PeriodicExportingMetricReader(HttpMetrics(endpoint=endpoint), export_interval_millis=interval)
    if name == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetrics,
        )

        return PeriodicExportingMetricReader(
            GrpcMetrics(endpoint=settings.otlp_endpoint), export_interval_millis=interval
        )
    return None


def _load_processor(path: str) -> SpanProcessor:
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise ValueError(f"span processor {path!r} must be `module:Class`")
    factory = getattr(importlib.import_module(module_name), attribute)
    processor = factory()
    if not isinstance(processor, SpanProcessor):
        raise TypeError(f"{path} did not produce an opentelemetry SpanProcessor")
    return processor
