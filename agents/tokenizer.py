"""The tokenizer/cost agent: fits each job to its model's context window, and keeps the cost ledger.

`budget` step: the prompt, the retrieved context and the history are counted
with the chosen model's own tokenizer; the oldest whole turns of history are
dropped until everything fits in the context window minus the tokens
reserved for the answer (the request's `max_tokens`, else the model's
`max_output_tokens`). A prompt that does not fit even without history is
answered with `input_too_long`.

Usage events (one per model call, from any agent) are recorded in the cost
ledger, off the critical path; nothing is emitted for them. The ledger is
idempotent on the event id, so a redelivered usage event counts once. A
ledger failure goes back to the runtime (transient ones as `RetryableError`,
retried; the caller is never answered for usage), and the event is first
appended to the unbilled spool (`relaychain.agents.stores.unbilled`), which
is replayed into the ledger after its next successful write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

from opentelemetry import trace

from relaychain.agents.stores.ledger import CostLedger
from relaychain.agents.stores.unbilled import UnbilledSpool
from relaychain.agents.tokens.counter import TokenCounter, counter_for, off_loop
from relaychain.agents.tokens.counter_loads import CounterLoads
from relaychain.agents.tokens.trim import fit_history
from relaychain.bus.errors import AgentError
from relaychain.schemas import ChatMessage, Event, Job, Usage
from relaychain.schemas.config import AppConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["TokenizerAgent"]

BUDGET_STEP = "budget"

log = logging.getLogger(__name__)


class TokenizerAgent:
    name = "tokenizer"

    def __init__(
        self,
        config: AppConfig,
        ledger: CostLedger,
        counters: Callable[[str], TokenCounter] | None = None,
        *,
        unbilled: UnbilledSpool | None = None,
    ) -> None:
        """`counters(model_name)` gives a model's token counter; by default `counter_for` on the config.
        `unbilled` keeps usage the ledger failed to take until it can."""
        self._config = config
        self._ledger = ledger
        self._unbilled = unbilled
        self._counters = CounterLoads(counters or self._configured_counter)

    async def handle(self, event: Event) -> Sequence[Event]:
        if isinstance(event, Usage):
            await self._bill(event)
            return []
        if isinstance(event, Job) and event.current_step == BUDGET_STEP:
            return [await self._fit(event)]
        raise AgentError(
            ErrorCode.UNEXPECTED_EVENT,
            f"tokenizer handles `budget` jobs and usage events, got a {event.type} event at step {event.current_step!r}",
        )

    async def warm_up(self) -> None:
        """Load the token counters of the available models requests go to unasked, so none of them pays the load
        (a model only a request's hint picks has its counter built by its first budget step: see `CounterLoads`;
        a model marked `available: false`, e.g. chatglm before its weights are set, is never routed to)."""
        names = {name for business in self._config.businesses.values() for name in business.allowed_models}
        await self._counters.warm_up(self._config, names, "budget steps")

    async def _bill(self, usage: Usage) -> None:
        span = trace.get_current_span()
        try:
            recorded = await self._ledger.record(usage)
        except AgentError:
            if self._unbilled is not None:
                await self._unbilled.append(usage)
                span.set_attribute("relaychain.ledger.unbilled", True)
            raise
        span.set_attribute("relaychain.ledger.recorded", recorded)
        if self._unbilled is not None and self._unbilled.pending:
            report = await self._unbilled.drain(self._ledger.record)
            log.warning(
                "ledger reachable again: %d unbilled usage events recorded, %d were already, %d still waiting",
                report.recorded,
                report.already_recorded,
                report.left,
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
        fit = partial(fit_history, prompt, job.history, await self._counters.get(job.model), budget)
        history, tokens = await off_loop(size, fit)
        span = trace.get_current_span()
        span.set_attribute("gen_ai.request.model", job.model)
        span.set_attribute("relaychain.tokens.input", tokens)
        span.set_attribute("relaychain.tokens.budget", budget)
        span.set_attribute("relaychain.history.dropped", len(job.history) - len(history))
        return job.advance(self.name, history=history)

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
    prompt = job.prompt or (ChatMessage(role="user", content=request.text),)
    if not job.context:
        return prompt
    context = ChatMessage(role="system", content="\n\n".join(chunk.text for chunk in job.context))
    return (context, *prompt)
