"""Model calls as GenAI CLIENT spans with the GenAI client metrics, over the real `openai` SDK."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from relaychain.agents.llm import CompletionRequest, ModelPool, OpenAIChatModel
from relaychain.agents.llm.telemetry import ModelCallTelemetry
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import ModelConfig, Provider
from tests.agents.test_generator import app_config
from tests.support.openai_server import Fail, OpenAITestServer, Reply


async def test_each_model_attempt_is_a_client_span_with_usage_and_the_metrics(
    openai_server: OpenAITestServer, tmp_path: Path
) -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])

    def remote(name: str, config: ModelConfig) -> OpenAIChatModel:
        return OpenAIChatModel(name, config, api_key="sk-test")

    pool = ModelPool(
        app_config(openai_server),
        tmp_path,
        factories={Provider.OPENAI: remote},
        telemetry=ModelCallTelemetry(tracer_provider, meter_provider),
    )
    openai_server.script("gpt-4o", Fail(500))
    openai_server.script("gpt-4o-mini", Reply("hi", input_tokens=30, output_tokens=7, cached_tokens=10))
    request = CompletionRequest(messages=[ChatMessage(role="user", content="hello")], max_tokens=50, temperature=0.2)
    try:
        with tracer_provider.get_tracer("test").start_as_current_span("generator generate", kind=SpanKind.CONSUMER):
            completion = await pool.complete_with_fallback("gpt-4o", request)
    finally:
        await pool.aclose()
    assert completion.model == "gpt-4o-mini"

    spans = {s.name: s for s in exporter.get_finished_spans()}
    consumer = spans["generator generate"]
    failed, answered = spans["chat gpt-4o"], spans["chat gpt-4o-mini"]
    for span in (failed, answered):
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == consumer.context.span_id
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.request.max_tokens"] == 50
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "model_server_error"
    assert answered.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert (answered.attributes["gen_ai.usage.input_tokens"], answered.attributes["gen_ai.usage.output_tokens"]) == (
        30,
        7,
    )
    assert answered.attributes["gen_ai.usage.cache_read.input_tokens"] == 10
    assert tuple(answered.attributes["gen_ai.response.finish_reasons"]) == ("stop",)

    data = reader.get_metrics_data()
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    durations = metrics["gen_ai.client.operation.duration"].data.data_points
    assert metrics["gen_ai.client.operation.duration"].unit == "s"
    assert {p.attributes.get("error.type") for p in durations} == {"model_server_error", None}
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in metrics["gen_ai.client.token.usage"].data.data_points}
    assert tokens == {"input": 30, "output": 7}
