"""The formatter: the model's text becomes the business's validated JSON, and the caller's answer.

Step `format`. The candidate is the last generate output: JSON is extracted
from it (code fences, prose around it), near-JSON is repaired, and the object
is validated against the business's output schema. A chain whose last step
answers with prose instead has its object assembled from every step's output,
the request's variables and the retrieved sources (`relaychain.agents.formatting.assemble`).

On failure, while `job.reasks < business.reask_limit`, the model is re-asked:
the job goes back with the bad answer and the errors appended to its prompt
(assistant: the bad answer; user: the errors and "reply with only the
corrected JSON"; a chain, which has no prompt of its own, first gets one user
message with the schema) and the slip `generate, moderate.output, format,
...rest`. `generate` with no suffix means: call the model on `job.prompt` as
it stands; the answer is the newest entry of `job.outputs`, and it is priced
like any other call. A generation that hit its token limit is treated as
truncated and re-asked, never repaired. After the limit, an `output_invalid`
error carries the last errors.

On success the formatter answers the caller itself: a `Response` with the
validated object, the model actually used (the last generate step's), every
usage line, cost totals per currency, the moderation outcomes and the trace
id. A `respond` step after `format` is consumed here. When other steps follow
(`memory.save`), the job goes on too, with `result` set: the caller is not
kept waiting for bookkeeping, and a failure there cannot take back an answer
already given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opentelemetry import trace

from relaychain.agents.formatting import (
    ExtractionError,
    OutputSchema,
    SchemaRegistry,
    SchemaViolation,
    assemble_from_steps,
    extract_json,
)
from relaychain.agents.guards import job_for, unknown_step
from relaychain.bus.errors import AgentError
from relaychain.schemas import ChatMessage, Event, Job, Money, Response, StepUsage
from relaychain.schemas.config import AppConfig, BusinessConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["REASK_INSTRUCTION", "FormatterAgent"]

REASK_INSTRUCTION = "Reply with only the corrected JSON object, nothing else."
RESPOND_STEP = "respond"


@dataclass(frozen=True)
class _Failure:
    errors: list[str]
    shown: str
    """The answer as the model will see it quoted back."""


class FormatterAgent:
    name = "formatter"

    def __init__(self, config: AppConfig, schemas: SchemaRegistry) -> None:
        self._config = config
        self._schemas = schemas

    async def handle(self, event: Event) -> Sequence[Event]:
        event = job_for(self.name, event)
        if event.current_step != "format":
            raise unknown_step(self.name, event.current_step)
        business = self._config.businesses.get(event.business)
        if business is None:
            raise AgentError(
                ErrorCode.UNKNOWN_BUSINESS, f"no business {event.business!r}", details={"business": event.business}
            )
        if not event.outputs:
            raise AgentError(ErrorCode.FORMAT_NO_OUTPUT, "format reached with no generated output")
        schema = self._schemas[business.output_schema]
        outcome = self._validated(event, business, schema)
        span = trace.get_current_span()
        span.set_attribute("relaychain.format.schema", schema.name)
        span.set_attribute("relaychain.format.reasks", event.reasks)
        if isinstance(outcome, _Failure):
            span.set_attribute("relaychain.format.outcome", "invalid")
            return [self._reask(event, business, schema, outcome)]
        result, repaired = outcome
        span.set_attribute("relaychain.format.outcome", "repaired" if repaired else "valid")
        return self._answer(event, result)

    def _validated(
        self, job: Job, business: BusinessConfig, schema: OutputSchema
    ) -> tuple[dict[str, Any], bool] | _Failure:
        text = list(job.outputs.values())[-1]
        try:
            extracted = extract_json(text, finish_reason=_finish_reason(job))
            return schema.validate(extracted.value), extracted.repaired
        except (ExtractionError, SchemaViolation) as exc:
            failure = _Failure(errors=_errors(exc), shown=text)
        if business.chain and not job.reasks:
            assembled = assemble_from_steps(job, schema.json_schema)
            try:
                return schema.validate(assembled), False
            except SchemaViolation as exc:
                return _Failure(errors=exc.errors, shown=json.dumps(assembled, ensure_ascii=False))
        return failure

    def _reask(self, job: Job, business: BusinessConfig, schema: OutputSchema, failure: _Failure) -> Job:
        if job.reasks >= business.reask_limit:
            raise AgentError(
                ErrorCode.OUTPUT_INVALID,
                f"the output did not match schema {schema.name!r} after {job.reasks} re-asks",
                details={"errors": failure.errors, "reasks": job.reasks, "schema": schema.name},
            )
        prompt = job.prompt or (
            ChatMessage(
                role="user",
                content=f"Write a JSON object matching this JSON Schema:\n{json.dumps(schema.json_schema, ensure_ascii=False)}",
            ),
        )
        errors = "\n".join(f"- {error}" for error in failure.errors)
        prompt = (
            *prompt,
            ChatMessage(role="assistant", content=failure.shown),
            ChatMessage(role="user", content=f"Your JSON was invalid:\n{errors}\n{REASK_INSTRUCTION}"),
        )
        retry_steps = (
            ("generate", "moderate.output", "format") if "moderate.output" in business.steps else ("generate", "format")
        )
        forwarded = job.advance(self.name, prompt=prompt, reasks=job.reasks + 1)
        return forwarded.model_copy(update={"slip": (*retry_steps, *forwarded.slip)})

    def _answer(self, job: Job, result: dict[str, Any]) -> list[Event]:
        generated = [line for line in job.usage if line.step.split(".", 1)[0] == "generate"]
        response = job.reply(
            Response,
            model=generated[-1].model if generated else job.model,
            output=result,
            usage=job.usage,
            cost=cost_totals(job.usage),
            moderation=job.moderation,
            trace_id=_trace_id(),
        )
        rest = tuple(step for step in job.slip[1:] if step != RESPOND_STEP)
        if not rest:
            return [response]
        forwarded = job.advance(self.name, result=result).model_copy(update={"slip": rest})
        return [response, forwarded]


def cost_totals(usage: Sequence[StepUsage]) -> tuple[Money, ...]:
    totals: dict[str, Decimal] = {}
    for line in usage:
        totals[line.currency] = totals.get(line.currency, Decimal(0)) + line.cost
    return tuple(Money(amount=amount, currency=currency) for currency, amount in sorted(totals.items()))


def _finish_reason(job: Job) -> str | None:
    """Why the last generate call stopped, as the generator recorded it (`length`: truncated)."""
    generated = [line for line in job.usage if line.step.split(".", 1)[0] == "generate"]
    return generated[-1].finish_reason if generated else None


def _errors(exc: ExtractionError | SchemaViolation) -> list[str]:
    return exc.errors if isinstance(exc, SchemaViolation) else [exc.message]


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
