"""The generator agent: one model call per `generate` step, priced, traced, with fallback.

Plain `generate` sends the routed prompt with the conversation history placed
after its leading system messages (the order the token budget counted). A
chain step `generate.<name>` renders that step's template with the request's
variables, the retrieved context and the earlier steps' outputs. The text
goes into `job.outputs` under the step's name (`generate` for a plain one).

The model actually used (after any fallback) becomes `job.model`, so later
steps and the ledger see who answered. Constrained decoding applies to the
plain `generate` step only: chain steps write prose that a later step or the
formatter assembles, so forcing the final schema on them would be wrong.

The provider is paid once per job: each completion is recorded in the
completion journal under the input event's id and the step before anything
is emitted, and a redelivered job whose completion is recorded re-emits it
without calling the model. A formatter re-ask is a new job (its own derived
id), so it is a new call. The `Usage` event carries the time the completion
was recorded, so a re-emitted one is identical to the first.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from opentelemetry import trace

from relaychain.agents.guards import job_for, unknown_step
from relaychain.agents.llm import Completion, CompletionRequest, ModelPool
from relaychain.agents.prompts import PromptLibrary
from relaychain.agents.router import template_scope
from relaychain.agents.stores.journal import CompletionJournal
from relaychain.agents.streaming import DeltaPublisher
from relaychain.agents.tokens.pricing import priced_usage
from relaychain.agents.tokens.trim import compose_messages
from relaychain.bus.cancellation import CancelledRequests
from relaychain.bus.errors import AgentError
from relaychain.schemas import Cancelled, ChatMessage, Event, Job, StepUsage, Usage
from relaychain.schemas.config import AppConfig, BusinessConfig, Provider
from relaychain.schemas.envelope import utc_now
from relaychain.schemas.errors import ErrorCode

__all__ = ["GENERATE_STEP", "GeneratorAgent", "SchemaFor"]

GENERATE_STEP = "generate"
SchemaFor = Callable[[str], dict[str, Any] | None]
"""Business name -> its output JSON Schema (None when there is none to enforce)."""
_UNJOURNALLED_LIMIT = 1024
_REMOTE = (Provider.OPENAI, Provider.OPENAI_COMPATIBLE)


class GeneratorAgent:
    name = "generator"

    def __init__(
        self,
        config: AppConfig,
        models: ModelPool,
        prompts: PromptLibrary,
        *,
        schema_for: SchemaFor | None = None,
        journal: CompletionJournal | None = None,
        record_content: bool = False,
        deltas: DeltaPublisher | None = None,
        cancelled: CancelledRequests | None = None,
    ) -> None:
        """`journal` makes a redelivered job re-emit its recorded completion instead of paying again (without
        one, every delivery calls the model). `record_content` puts prompt and completion text on spans; off by
        default, they may hold personal data. `deltas` streams a request's tokens when it asks to stream;
        `cancelled` stops a generation mid-way."""
        self._config = config
        self._models = models
        self._prompts = prompts
        self._schema_for = schema_for
        self._journal = journal
        self._record_content = record_content
        self._deltas = deltas
        self._cancelled = cancelled
        self._unjournalled: OrderedDict[str, Completion] = OrderedDict()
        """Completions paid for whose journal write failed: the runtime's retry records them, not pays again."""

    async def warm_up(self) -> None:
        """Load the local models the businesses default to (and their fallbacks) now, so no request pays the load."""
        names = {
            name for business in self._config.businesses.values() for name in self._models.chain(business.default_model)
        }
        for name in sorted(names):
            if self._models.model_config(name).provider not in _REMOTE:
                await self._models.get(name).load()

    async def handle(self, event: Event) -> Sequence[Event]:
        event = job_for(self.name, event)
        step = event.current_step or ""
        kind, _, chain_step = step.partition(".")
        if kind != GENERATE_STEP:
            raise unknown_step(self.name, step)
        business = self._prompts.business(event.business)
        messages = self._messages(event, chain_step) if chain_step else compose_messages(event.prompt, event.history)
        if not messages:
            raise AgentError(ErrorCode.EMPTY_PROMPT, f"job {event.id} reached {step!r} without a prompt")
        options = event.request.options
        max_tokens = self._max_tokens(event, business, chain_step)
        stream = self._deltas.open(event, step) if self._deltas is not None and options.stream else None
        cancelled = self._cancelled.signal(event.request_id) if self._cancelled is not None else None
        try:
            completion, paid_at = await self._journalled(
                f"{event.id}/{step}",
                lambda: self._models.complete_with_fallback(
                    event.model,
                    CompletionRequest(
                        messages=messages,
                        max_tokens=max_tokens,
                        temperature=options.temperature,
                        timeout_s=options.timeout_s,
                        json_schema=None if chain_step else self._json_schema(event.business, business),
                        on_delta=stream,
                        cancelled=cancelled,
                    ),
                ),
            )
        finally:
            if self._cancelled is not None:
                self._cancelled.release(event.request_id)
            if stream is not None:
                await stream.close()
        usage = priced_usage(
            step=step,
            model=completion.model,
            price_per_million=self._models.model_config(completion.model).price_on(paid_at.date()),
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cached_input_tokens=completion.cached_input_tokens,
            reasoning_tokens=completion.reasoning_tokens,
            latency_ms=completion.latency_ms,
            finish_reason=completion.finish_reason,
        )
        self._annotate(event.model, max_tokens, messages, completion, usage)
        if completion.finish_reason == "cancelled":
            # Stopped mid-generation: the tokens generated until then are billed, the caller gets `Cancelled`.
            reason = self._cancelled.reason(event.request_id) if self._cancelled is not None else None
            return [
                event.reply(Cancelled, reason=reason or "cancelled", step=step, usage=(*event.usage, usage)),
                event.reply(Usage, usage=usage, created_at=paid_at),
            ]
        outputs = {**event.outputs, chain_step or GENERATE_STEP: completion.text}
        return [
            event.advance(self.name, outputs=outputs, usage=(*event.usage, usage), model=completion.model),
            event.reply(Usage, usage=usage, created_at=paid_at),
        ]

    async def _journalled(self, key: str, call: Callable[[], Awaitable[Completion]]) -> tuple[Completion, datetime]:
        """The completion recorded under `key` and when, else a new one, recorded before it is returned."""
        if self._journal is None:
            return await call(), utc_now()
        span = trace.get_current_span()
        entry = await self._journal.get(key)
        span.set_attribute("relaychain.journal.replayed", entry is not None)
        if entry is None:
            completion = self._unjournalled.pop(key, None) or await call()
            try:
                entry = await self._journal.record(key, completion.model_dump_json())
            except BaseException:
                self._unjournalled[key] = completion
                while len(self._unjournalled) > _UNJOURNALLED_LIMIT:
                    self._unjournalled.popitem(last=False)
                raise
        return Completion.model_validate_json(entry.payload), entry.recorded_at

    def _messages(self, job: Job, chain_step: str) -> list[ChatMessage]:
        variables = template_scope(job.request, job.model, context=job.context, outputs=dict(job.outputs))
        rendered = self._prompts.render_step(job.business, chain_step, variables, model=job.model)
        return compose_messages(rendered, job.history)

    def _max_tokens(self, job: Job, business: BusinessConfig, chain_step: str) -> int:
        """The step's own limit, else the request's, else the model's; never past the model's."""
        ceiling = self._models.model_config(job.model).max_output_tokens
        step_limit = next((s.max_tokens for s in business.chain if s.name == chain_step), None) if chain_step else None
        return min(step_limit or job.request.options.max_tokens or ceiling, ceiling)

    def _json_schema(self, business_name: str, business: BusinessConfig) -> dict[str, Any] | None:
        if not business.constrained_decoding or self._schema_for is None:
            return None
        return self._schema_for(business_name)

    def _annotate(
        self, requested: str, max_tokens: int, messages: Sequence[ChatMessage], completion: Completion, usage: StepUsage
    ) -> None:
        """OpenTelemetry GenAI semantic-convention attributes, plus cost, on the runtime's span for this step."""
        span = trace.get_current_span()
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": completion.provider,
                "gen_ai.request.model": requested,
                "gen_ai.request.max_tokens": max_tokens,
                "gen_ai.response.model": completion.response_model,
                "gen_ai.response.finish_reasons": [completion.finish_reason],
                "gen_ai.usage.input_tokens": completion.input_tokens,
                "gen_ai.usage.output_tokens": completion.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": completion.cached_input_tokens,
                "gen_ai.usage.reasoning.output_tokens": completion.reasoning_tokens,
                "relaychain.model": completion.model,
                "relaychain.cost": float(usage.cost),
                "relaychain.cost.currency": usage.currency,
                "relaychain.latency_ms": completion.latency_ms,
            }
        )
        if self._record_content:
            span.set_attribute(
                "gen_ai.input.messages",
                json.dumps([m.model_dump(exclude_none=True) for m in messages], ensure_ascii=False),
            )
            span.set_attribute(
                "gen_ai.output.messages",
                json.dumps(
                    [{"role": "assistant", "content": completion.text, "finish_reason": completion.finish_reason}],
                    ensure_ascii=False,
                ),
            )
