"""The moderator: sensitive words on the input (before any model runs) and on the output.

`moderate.input` scans what the caller sent (input, messages, string
variables) and the rendered prompt's user messages; `moderate.output` scans
the generate outputs: all of them the first time (a chain's every step ends
up in the result), only the newest after a formatter re-ask.

Each matched category gets its action: the business's `actions`, else the
global `actions`, else the business's `default_action`. The strongest action
wins for the event: `block` answers with a `Blocked` naming the blocked
categories; `mask` replaces every masked match with `*` of the same length
and forwards; `flag` forwards untouched. Every stage appends a
`ModerationOutcome` to the job and puts per-category counts on the span.
The words themselves never leave this module: not in events, spans or logs.

Input counts are per category the larger of the request's own fields and
the prompt (the prompt repeats the input, so adding them would count twice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import trace

from relaychain.agents.guards import business_of, job_for, unknown_step
from relaychain.agents.moderation import Match, Matcher, WordLists
from relaychain.schemas import Blocked, ChatMessage, Event, Job, ModerationOutcome, Request
from relaychain.schemas.config import AppConfig, BusinessConfig, CategoryAction

__all__ = ["ModeratorAgent", "mask"]

Stage = Literal["input", "output"]
_SEVERITY = {"pass": 0, CategoryAction.FLAG: 1, CategoryAction.MASK: 2, CategoryAction.BLOCK: 3}


class ModeratorAgent:
    name = "moderator"

    def __init__(self, config: AppConfig, lists: WordLists) -> None:
        self._config = config
        self._lists = lists

    async def handle(self, event: Event) -> Sequence[Event]:
        event = job_for(self.name, event)
        business = business_of(self._config, event)
        matcher = await self._lists.matcher(event.business)
        match event.current_step:
            case "moderate.input":
                return self._moderate_input(event, business, matcher)
            case "moderate.output":
                return self._moderate_output(event, business, matcher)
            case step:
                raise unknown_step(self.name, step)

    def _moderate_input(self, job: Job, business: BusinessConfig, matcher: Matcher) -> Sequence[Event]:
        request = job.request
        input_matches = matcher.find(request.input) if request.input is not None else []
        message_matches = [matcher.find(m.content) for m in request.messages]
        var_matches = {k: matcher.find(v) for k, v in request.vars.items() if isinstance(v, str)}
        prompt_matches = [matcher.find(m.content) if m.role == "user" else [] for m in job.prompt]
        request_counts = _counts([input_matches, *message_matches, *var_matches.values()])
        counts = _larger(request_counts, _counts(prompt_matches))
        verdict = self._verdict(counts, business)
        _record_on_span("input", counts, verdict.action)
        if verdict.action == "block":
            return [job.reply(Blocked, stage="input", categories=verdict.blocked)]
        updates: dict[str, Any] = {
            "moderation": (*job.moderation, ModerationOutcome(stage="input", action=verdict.action, counts=counts))
        }
        if verdict.action == "mask":
            masked = verdict.masked
            updates["request"] = _masked_request(request, masked, input_matches, message_matches, var_matches)
            updates["prompt"] = tuple(
                _masked_message(m, found, masked) for m, found in zip(job.prompt, prompt_matches, strict=True)
            )
        return [job.advance(self.name, **updates)]

    def _moderate_output(self, job: Job, business: BusinessConfig, matcher: Matcher) -> Sequence[Event]:
        names = list(job.outputs)[-1:] if job.reasks else list(job.outputs)
        found = {name: matcher.find(job.outputs[name]) for name in names}
        counts = _counts(found.values())
        verdict = self._verdict(counts, business)
        _record_on_span("output", counts, verdict.action)
        if verdict.action == "block":
            return [job.reply(Blocked, stage="output", categories=verdict.blocked)]
        updates: dict[str, Any] = {
            "moderation": (*job.moderation, ModerationOutcome(stage="output", action=verdict.action, counts=counts))
        }
        if verdict.action == "mask":
            outputs = dict(job.outputs)
            for name, matches in found.items():
                outputs[name] = mask(outputs[name], matches, verdict.masked)
            updates["outputs"] = outputs
        return [job.advance(self.name, **updates)]

    def _verdict(self, counts: dict[str, int], business: BusinessConfig) -> _Verdict:
        actions = {category: self._action(category, business) for category in counts}
        strongest = max(actions.values(), key=_SEVERITY.__getitem__, default="pass")
        return _Verdict(
            action="pass" if strongest == "pass" else CategoryAction(strongest).value,
            blocked=tuple(sorted(c for c, a in actions.items() if a == CategoryAction.BLOCK)),
            masked=frozenset(c for c, a in actions.items() if a == CategoryAction.MASK),
        )

    def _action(self, category: str, business: BusinessConfig) -> CategoryAction:
        own = business.moderation.actions.get(category)
        if own is not None:
            return own
        return self._config.moderation.actions.get(category, business.moderation.default_action)


@dataclass(frozen=True)
class _Verdict:
    """The event's action (the strongest of its categories') and the categories blocked and masked."""

    action: Literal["pass", "flag", "mask", "block"]
    blocked: tuple[str, ...]
    masked: frozenset[str]


def mask(text: str, matches: Iterable[Match], categories: frozenset[str]) -> str:
    """`text` with every match of a masked category replaced by `*` of the same length."""
    chars = list(text)
    for found in matches:
        if found.category in categories:
            chars[found.start : found.end] = "*" * (found.end - found.start)
    return "".join(chars)


def _masked_request(
    request: Request,
    categories: frozenset[str],
    input_matches: list[Match],
    message_matches: list[list[Match]],
    var_matches: dict[str, list[Match]],
) -> Request:
    updates: dict[str, Any] = {
        "messages": tuple(
            _masked_message(m, found, categories) for m, found in zip(request.messages, message_matches, strict=True)
        ),
        "vars": {**request.vars, **{k: mask(request.vars[k], found, categories) for k, found in var_matches.items()}},
    }
    if request.input is not None:
        updates["input"] = mask(request.input, input_matches, categories)
    return request.model_copy(update=updates)


def _masked_message(message: ChatMessage, matches: list[Match], categories: frozenset[str]) -> ChatMessage:
    if not matches:
        return message
    return message.model_copy(update={"content": mask(message.content, matches, categories)})


def _counts(groups: Iterable[list[Match]]) -> dict[str, int]:
    counter: Counter[str] = Counter()
    for matches in groups:
        counter.update(found.category for found in matches)
    return dict(sorted(counter.items()))


def _larger(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {category: max(a.get(category, 0), b.get(category, 0)) for category in sorted(a.keys() | b.keys())}


def _record_on_span(stage: Stage, counts: dict[str, int], action: str) -> None:
    span = trace.get_current_span()
    span.set_attribute("relaychain.moderation.stage", stage)
    span.set_attribute("relaychain.moderation.action", action)
    for category, count in counts.items():
        span.set_attribute(f"relaychain.moderation.{category}", count)
