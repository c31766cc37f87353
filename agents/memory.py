"""The memory agent: conversation history in the prompt, and the finished turn back into the store.

`memory.load` puts the business's recall of the conversation (see
`relaychain.agents.memory_policies`) into `job.history`: the running summary as a system
message, then the verbatim turns. Under the `summary` policy, turns that no
longer fit the budget are folded into the summary by an injected summariser
(the composition root backs it with the generator's model pool); the call is
priced like any other, as a `Usage` event and a line in `job.usage`, and the
summary is stored so it survives restarts and is never recomputed for the
same turns. The summary call is journalled like the generator's (see
`relaychain.agents.stores.journal`) under the conversation and the range of
turns it folds, so a job redelivered after the model answered does not pay
for the same summary again.

`memory.save` sits after moderation and formatting on the slip, so only an
answered, clean, valid turn reaches it; a failed or blocked request never
gets here and is never remembered. The save is idempotent on the event id.
Events are keyed by conversation id, so one conversation's loads and saves
arrive in order at one worker. A store that is briefly unavailable (locked,
connection lost) raises `RetryableError`, so the runtime retries the step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from opentelemetry import trace

from relaychain.agents.guards import business_of, job_for, unknown_step
from relaychain.agents.memory_policies import (
    Recall,
    Summariser,
    SummaryResult,
    TextCounter,
    plan_recall,
    turns_needed,
)
from relaychain.agents.stores.errors import database_errors
from relaychain.agents.stores.history import ConversationStore, Summary, Turn
from relaychain.agents.stores.journal import CompletionJournal
from relaychain.bus.errors import AgentError
from relaychain.schemas import Event, Job, StepUsage, Usage
from relaychain.schemas.config import AppConfig, MemoryPolicy
from relaychain.schemas.envelope import utc_now
from relaychain.schemas.errors import ErrorCode

__all__ = ["MemoryAgent"]

SUMMARY_STEP = "memory.summary"


class MemoryAgent:
    name = "memory"

    def __init__(
        self,
        config: AppConfig,
        store: ConversationStore,
        *,
        counter_for: Callable[[str], TextCounter] | None = None,
        summarise: Summariser | None = None,
        journal: CompletionJournal | None = None,
    ) -> None:
        """`counter_for(model_name)` gives the model's token counter (tokens and summary policies);
        `summarise` writes summaries (summary policy). Missing ones fail here, at start-up. `journal`
        keeps each summary call's result, so a redelivered job re-uses it instead of paying again."""
        kinds = {business.memory.kind for business in config.businesses.values()}
        if kinds & {"tokens", "summary"} and counter_for is None:
            raise ValueError("a business uses a token-budget memory policy but no counter_for was given")
        if "summary" in kinds and summarise is None:
            raise ValueError("a business uses the summary memory policy but no summariser was given")
        self._config = config
        self._store = store
        self._counter_for = counter_for
        self._summarise = summarise
        self._journal = journal

    async def handle(self, event: Event) -> Sequence[Event]:
        event = job_for(self.name, event)
        business = business_of(self._config, event)
        match event.current_step:
            case "memory.load":
                return await self._load(event, business.memory)
            case "memory.save":
                return await self._save(event, business.memory)
            case step:
                raise unknown_step(self.name, step)

    async def _load(self, job: Job, policy: MemoryPolicy) -> Sequence[Event]:
        if job.conversation_id is None or policy.kind == "none":
            return [job.advance(self.name)]
        counter = self._counter_for(job.model) if self._counter_for is not None else None
        with database_errors("memory"):
            summary = await self._store.get_summary(job.conversation_id) if policy.kind == "summary" else None
            covered = summary.turns_covered if summary is not None else 0
            turns = await self._store.load(job.conversation_id, newest=turns_needed(policy, counter), after=covered)
        recall = plan_recall(policy, turns, summary=summary, counter=counter, first=covered)
        usage: tuple[StepUsage, ...] = ()
        paid_at = utc_now()
        if recall.overflow:
            recall, usage, paid_at = await self._fold(job.conversation_id, policy, recall)
        span = trace.get_current_span()
        span.set_attribute("relaychain.memory.turns_loaded", len(turns))
        span.set_attribute("relaychain.memory.turns_recalled", len(recall.turns))
        span.set_attribute("relaychain.memory.summarised", recall.summary is not None)
        forwarded = job.advance(self.name, history=recall.messages(), usage=(*job.usage, *usage))
        return [forwarded, *(job.reply(Usage, usage=line, created_at=paid_at) for line in usage)]

    async def _fold(
        self, conversation_id: str, policy: MemoryPolicy, recall: Recall
    ) -> tuple[Recall, tuple[StepUsage, ...], datetime]:
        """Fold the overflowing turns into the summary, store it, and recall with the new summary."""
        assert self._summarise is not None and policy.summary_model is not None  # checked at construction
        previous = recall.summary
        covered_before = previous.turns_covered if previous else 0
        covered = covered_before + len(recall.overflow)
        key = f"{SUMMARY_STEP}/{conversation_id}/{covered_before}-{covered}/{policy.summary_model}"
        result, paid_at = await self._journalled(
            key, policy.summary_model, recall.overflow, previous.text if previous else None
        )
        summary = Summary(text=result.text, turns_covered=covered)
        with database_errors("memory"):
            await self._store.set_summary(conversation_id, summary)
        usage = result.usage.model_copy(update={"step": SUMMARY_STEP})
        return Recall(turns=recall.turns, summary=summary), (usage,), paid_at

    async def _journalled(
        self, key: str, model: str, turns: Sequence[Turn], previous: str | None
    ) -> tuple[SummaryResult, datetime]:
        assert self._summarise is not None
        if self._journal is None:
            return await self._summarise(model, turns, previous), utc_now()
        entry = await self._journal.get(key)
        if entry is None:
            result = await self._summarise(model, turns, previous)
            payload = json.dumps({"text": result.text, "usage": result.usage.model_dump(mode="json")})
            entry = await self._journal.record(key, payload)
        recorded = json.loads(entry.payload)
        return SummaryResult(
            text=recorded["text"], usage=StepUsage.model_validate(recorded["usage"])
        ), entry.recorded_at

    async def _save(self, job: Job, policy: MemoryPolicy) -> Sequence[Event]:
        if job.conversation_id is not None and policy.kind != "none":
            turn = Turn(user=job.request.text, assistant=_answer_text(job))
            with database_errors("memory"):
                await self._store.append(job.conversation_id, turn, event_id=job.id)
        done = job.advance(self.name)
        # The answer went out at `format`; a job with no step left has nowhere to go.
        return [done] if done.slip else []


def _answer_text(job: Job) -> str:
    """The formatted result as JSON text, else the last generate step's output."""
    if job.result is not None:
        return json.dumps(job.result, ensure_ascii=False)
    if job.outputs:
        return list(job.outputs.values())[-1]
    raise AgentError(ErrorCode.MEMORY_NO_ANSWER, "memory.save reached with no formatted result and no generated output")
