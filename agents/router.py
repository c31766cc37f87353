"""The router: picks the model, renders the prompt, writes the slip.

Model choice: the request's model if the business allows it, else the
business default; a model marked unavailable or over the business's daily
budget gives way to its fallback, and so on down the chain. The budget check
reads the ledger's running total for the day: one key lookup per request.

Size: a caller's `messages` history is bounded by the business's memory
policy (`relaychain.agents.memory_policies.bound_messages`), then the whole
text the job will carry (every kept message, not only the last) must fit
`max_input_chars`, else `input_too_long`. Every later event carries that
text again, so this keeps them all under the bus's size limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

from opentelemetry import trace

from relaychain.agents.memory_policies import TextCounter, bound_messages
from relaychain.agents.prompts import PromptLibrary
from relaychain.agents.tokens.counter_loads import CounterLoads
from relaychain.bus.errors import AgentError
from relaychain.schemas.config import AppConfig, BusinessConfig
from relaychain.schemas.envelope import Event, StepRecord
from relaychain.schemas.errors import ErrorCode
from relaychain.schemas.events import Job, Request

SpendToday = Callable[[str, str], Awaitable[Decimal]]
"""(business, model) -> what the business has spent on the model today, in the model's currency."""
TenantSpendToday = Callable[[str], Awaitable[dict[str, Decimal]]]
"""tenant -> what it has spent today, per currency."""


class RouterAgent:
    name = "router"

    def __init__(
        self,
        config: AppConfig,
        prompts: PromptLibrary,
        spend_today: SpendToday | None = None,
        *,
        counter_for: Callable[[str], TextCounter] | None = None,
        tenant_spend_today: TenantSpendToday | None = None,
    ) -> None:
        """`counter_for(model_name)` lets token-budget memory policies bound a caller's `messages` by tokens;
        `tenant_spend_today` enforces the gateway tenants' daily budgets."""
        self.config = config
        self.prompts = prompts
        self.spend_today = spend_today
        self.tenant_spend_today = tenant_spend_today
        # A Hugging Face tokenizer takes seconds to load: off the loop, once per model.
        self._counters = CounterLoads(counter_for) if counter_for is not None else None

    async def handle(self, event: Event) -> Sequence[Event]:
        if not isinstance(event, Request):
            raise AgentError(ErrorCode.UNEXPECTED_EVENT, f"router reads requests, got a {event.type} event")
        business = self.prompts.business(event.business)
        await self._check_tenant_budget(event)
        model = await self._choose_model(event, business)
        if event.messages:
            counter = await self._counter(model) if business.memory.kind in ("tokens", "summary") else None
            bounded = bound_messages(business.memory, event.messages, counter)
            if len(bounded) < len(event.messages):
                event = event.model_copy(update={"messages": bounded})
        size = sum(len(m.content) for m in event.messages) + len(event.input or "")
        if size > business.max_input_chars:
            raise AgentError(
                ErrorCode.INPUT_TOO_LONG,
                f"input has {size} characters; business {event.business!r} accepts {business.max_input_chars}",
                details={"chars": size, "max_input_chars": business.max_input_chars},
            )
        missing = [name for name in business.variables if name not in event.vars]
        if missing:
            raise AgentError(
                ErrorCode.MISSING_VARIABLE,
                f"business {event.business!r} needs variables {missing}",
                details={"missing": missing},
            )
        prompt = () if business.chain else self.prompts.render(event.business, model, template_scope(event, model))
        span = trace.get_current_span()
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("relaychain.slip", list(business.steps))
        job = event.reply(
            Job,
            request=event,
            model=model,
            prompt=prompt,
            history=event.messages[:-1] if event.messages else (),
            slip=business.steps,
            results=(StepRecord(step="route", agent=self.name),),
        )
        return [job]

    async def _choose_model(self, request: Request, business: BusinessConfig) -> str:
        name = request.model or business.default_model
        if name not in business.allowed_models:
            raise AgentError(
                ErrorCode.MODEL_NOT_ALLOWED,
                f"business {request.business!r} does not allow model {name!r}",
                details={"allowed": list(business.allowed_models)},
            )
        tried: list[str] = []
        for candidate in self.config.fallback_chain(name):
            tried.append(candidate)
            if self.config.models[candidate].available and not await self._over_budget(
                request.business, candidate, business
            ):
                return candidate
        raise AgentError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"no available model for {request.business!r}: tried {tried}",
            details={"tried": tried},
        )

    async def warm_up(self) -> None:
        """Load the token counters that token-budget memory policies bound callers' histories with, of the models
        requests go to unasked (a hinted model's is built by its first request: see `CounterLoads`)."""
        if self._counters is None:
            return
        names = [
            model
            for business in self.config.businesses.values()
            if business.memory.kind in ("tokens", "summary")
            for model in business.allowed_models
        ]
        await self._counters.warm_up(self.config, names, "requests with history")

    async def _counter(self, model: str) -> TextCounter | None:
        return None if self._counters is None else await self._counters.get(model)

    async def _check_tenant_budget(self, request: Request) -> None:
        tenant = self.config.tenants.get(request.tenant) if request.tenant is not None else None
        if tenant is None or tenant.daily_budget is None or self.tenant_spend_today is None:
            return
        spent = (await self.tenant_spend_today(request.tenant or "")).get(tenant.currency, Decimal(0))
        if spent >= tenant.daily_budget:
            raise AgentError(
                ErrorCode.TENANT_BUDGET_EXHAUSTED,
                f"tenant {request.tenant!r} has spent its daily budget of {tenant.daily_budget} {tenant.currency}",
                details={"spent": str(spent), "budget": str(tenant.daily_budget), "currency": tenant.currency},
            )

    async def _over_budget(self, business_name: str, model: str, business: BusinessConfig) -> bool:
        if business.daily_budget is None or self.spend_today is None:
            return False
        return await self.spend_today(business_name, model) >= business.daily_budget


def template_scope(request: Request, model: str, **extra: Any) -> dict[str, Any]:
    """What a template sees: the request's variables and the built-ins."""
    return {"context": (), "outputs": {}, **request.vars, "input": request.text, "model": model, **extra}
