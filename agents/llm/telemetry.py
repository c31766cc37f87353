"""Each model call as the OpenTelemetry GenAI semantic conventions describe it (version 1.37.0).

A CLIENT span named `{gen_ai.operation.name} {gen_ai.request.model}` under the
generator's consumer span, one per attempt on a model (a fallback is a second
span), with the request, response and usage attributes; and the two GenAI
client metrics, `gen_ai.client.operation.duration` (seconds) and
`gen_ai.client.token.usage` (tokens, by `gen_ai.token.type`). Prompt and
completion text stay on the consumer span, and only when the config opts in.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from relaychain.agents.llm.base import Completion, CompletionRequest
from relaychain.bus.errors import AgentError
from relaychain.schemas.config import ModelConfig

__all__ = ["SEMCONV_VERSION", "ModelCallTelemetry"]

SEMCONV_VERSION = "1.37.0"
OPERATION = "chat"
# The buckets the conventions advise for these two histograms.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)


class ModelCallTelemetry:
    """Spans and metrics around model calls, from the process's providers (no-ops when none are given)."""

    def __init__(
        self, tracer_provider: trace.TracerProvider | None = None, meter_provider: metrics.MeterProvider | None = None
    ) -> None:
        schema_url = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
        self._tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer(
            "relaychain.llm", schema_url=schema_url
        )
        meter = (meter_provider or metrics.NoOpMeterProvider()).get_meter("relaychain.llm", schema_url=schema_url)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )

    @asynccontextmanager
    async def call(self, name: str, config: ModelConfig, request: CompletionRequest) -> AsyncIterator[_Call]:
        """`async with telemetry.call(...) as call: call.done(await model.complete(request))`."""
        model_id = config.model_id or name
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.provider.name": config.provider.value,
            "gen_ai.request.model": model_id,
            "gen_ai.request.max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if config.base_url:
            attributes["server.address"] = config.base_url
        started = time.perf_counter()
        with self._tracer.start_as_current_span(
            f"{OPERATION} {model_id}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            call = _Call(span)
            metric_attributes = {k: attributes[k] for k in ("gen_ai.operation.name", "gen_ai.provider.name")}
            metric_attributes["gen_ai.request.model"] = model_id
            try:
                yield call
            except Exception as exc:  # recorded on the span and re-raised: the caller handles it
                error_type = exc.code if isinstance(exc, AgentError) else type(exc).__qualname__
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                metric_attributes["error.type"] = error_type
                raise
            finally:
                completion = call.completion
                if completion is not None:
                    metric_attributes["gen_ai.response.model"] = completion.response_model
                    self._tokens.record(completion.input_tokens, {**metric_attributes, "gen_ai.token.type": "input"})
                    self._tokens.record(completion.output_tokens, {**metric_attributes, "gen_ai.token.type": "output"})
                self._duration.record(time.perf_counter() - started, metric_attributes)


class _Call:
    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self.completion: Completion | None = None

    def done(self, completion: Completion) -> Completion:
        self.completion = completion
        self._span.set_attributes(
            {
                "gen_ai.response.model": completion.response_model,
                "gen_ai.response.finish_reasons": [completion.finish_reason],
                "gen_ai.usage.input_tokens": completion.input_tokens,
                "gen_ai.usage.output_tokens": completion.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": completion.cached_input_tokens,
                "gen_ai.usage.reasoning.output_tokens": completion.reasoning_tokens,
            }
        )
        return completion
