"""The tokenizer/cost agent: fits each job to its model's context window, and keeps the cost ledger.

`budget` step: the prompt, the retrieved context and the history are counted
with the chosen model's own tokenizer; the oldest whole turns of history are
dropped until everything fits in the context window minus the tokens
reserved for the answer (the request's `max_tokens`, else the model's
`max_output_tokens`). A prompt that does not fit even without history is
answered with `input_too_long`.

Usage events (one per model call, from any agent) are recorded in the cost
ledger, off the critical path; nothing is emitted for them. The ledger is
idempotent on the event id, so a redelivered usage event counts once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial

from opentelemetry import trace

from relaychain.agents.stores.ledger import CostLedger
from relaychain.agents.tokens.counter import TokenCounter, counter_for, off_loop
from relaychain.agents.tokens.encodings import EncodingUnavailable
from relaychain.agents.tokens.trim import fit_history
from relaychain.bus.errors import AgentError
from relaychain.schemas import ChatMessage, Event, Job, Usage
from relaychain.schemas.config import AppConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["TokenizerAgent"]

BUDGET_STEP = "budget"


class TokenizerAgent:
    name = "tokenizer"

    def __init__(
        self,
        config: AppConfig,
        ledger: CostLedger,
        counters: Callable[[str], TokenCounter] | None = None,
    ) -> None:
        """`counters(model_name)` gives a model's token counter; by default `counter_for` on the config."""
        self._config = config
        self._ledger = ledger
        self._counters = counters or self._configured_counter
        self._resolved: dict[str, TokenCounter] = {}

    async def handle(self, event: Event) -> Sequence[Event]:
        if isinstance(event, Usage):
            recorded = await self._ledger.record(event)
            trace.get_current_span().set_attribute("relaychain.ledger.recorded", recorded)
            return []
        if isinstance(event, Job) and event.current_step == BUDGET_STEP:
            return [await self._fit(event)]
        raise AgentError(
            ErrorCode.UNEXPECTED_EVENT,
            f"tokenizer handles `budget` jobs and usage events, got a {event.type} event at step {event.current_step!r}",
        )

    async def _fit(self, job: Job) -> Job:
        model = self._config.models.get(job.model)
        if model is None:
            raise AgentError(ErrorCode.UNKNOWN_MODEL, f"model {job.model!r} is not configured")
        reserved = job.request.options.max_tokens or model.max_output_tokens
        budget = model.context_window - reserved
        if budget <= 0:
            raise AgentError(
                ErrorCode.INPUT_TOO_LONG,
                f"max_tokens {reserved} leaves no room for input in {job.model}'s {model.context_window}-token window",
                details={"prompt_tokens": 0, "budget": budget},
            )
        prompt = prompt_messages(job)
        size = sum(len(m.content) for m in (*prompt, *job.history))
        fit = partial(fit_history, prompt, job.history, await self._counter(job.model), budget)
        history, tokens = await off_loop(size, fit)
        span = trace.get_current_span()
        span.set_attribute("gen_ai.request.model", job.model)
        span.set_attribute("relaychain.tokens.input", tokens)
        span.set_attribute("relaychain.tokens.budget", budget)
        span.set_attribute("relaychain.history.dropped", len(job.history) - len(history))
        return job.advance(self.name, history=history)

    async def _counter(self, model_name: str) -> TokenCounter:
        counter = self._resolved.get(model_name)
        if counter is None:
            # The first use builds it: a Hugging Face tokenizer takes seconds to load from a GGUF file.
            try:
                counter = await asyncio.to_thread(self._counters, model_name)
            except (EncodingUnavailable, ValueError, OSError) as exc:
                raise AgentError(
                    ErrorCode.TOKENIZER_UNAVAILABLE, f"no tokenizer for model {model_name!r}: {exc}"
                ) from exc
            self._resolved[model_name] = counter
        return counter

    def _configured_counter(self, model_name: str) -> TokenCounter:
        return counter_for(self._config.models[model_name], model_name)


def prompt_messages(job: Job) -> tuple[ChatMessage, ...]:
    """What the model will read besides history.

    A chain's steps render their templates at generate time, so its job has
    no prompt yet: the request text stands in for it. Retrieved chunks arrive
    after routing, so they are not in the prompt yet; they are counted as one
    more system message, whatever place the template later gives them.
    """
    request = job.request
    prompt = job.prompt or (ChatMessage(role="user", content=request.input or request.messages[-1].content),)
    if not job.context:
        return prompt
    context = ChatMessage(role="system", content="\n\n".join(chunk.text for chunk in job.context))
    return (context, *prompt)
