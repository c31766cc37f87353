"""Memory policies: which of a conversation's turns go into the prompt, and which get summarised.

The policies are pure: given all turns (oldest first), the stored summary and
a token counter, `plan_recall` says which turns are kept verbatim and which
older turns must be folded into the summary. The memory agent does the I/O
(the store, the summarising model call).

- `none`: nothing.
- `full`: every turn.
- `window`: the last `turns` turns.
- `tokens`: the newest turns whose tokens together fit `max_tokens`; the
  first (newest-to-oldest) turn that does not fit ends the window, so the
  kept turns are always a contiguous suffix of the conversation.
- `summary`: like `tokens` over the turns the summary does not cover yet;
  the rest of those turns overflow into the summary.

`bound_messages` applies the same limits to a history the caller sends in
`messages` (the router bounds it before anything downstream carries it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from relaychain.agents.stores.history import Summary, Turn
from relaychain.schemas import ChatMessage, StepUsage
from relaychain.schemas.config import MemoryPolicy

__all__ = [
    "Recall",
    "Summariser",
    "SummaryResult",
    "TextCounter",
    "bound_messages",
    "plan_recall",
    "turn_tokens",
    "turns_needed",
]


class TextCounter(Protocol):
    """Any token counter with `count(text)`; one with `count_messages(messages)` is used for chat framing too."""

    def count(self, text: str) -> int: ...


@dataclass(frozen=True)
class SummaryResult:
    text: str
    usage: StepUsage


class Summariser(Protocol):
    """Folds `turns` into `previous` (None for the first summary) with model `model`; returns text and usage."""

    async def __call__(self, model: str, turns: Sequence[Turn], previous: str | None) -> SummaryResult: ...


@dataclass(frozen=True)
class Recall:
    """What to put in the prompt: the summary (if any) and the verbatim turns, oldest first."""

    turns: tuple[Turn, ...]
    summary: Summary | None = None
    overflow: tuple[Turn, ...] = ()
    """Older turns neither kept nor covered by `summary` yet: the summary policy folds them in."""

    def messages(self) -> tuple[ChatMessage, ...]:
        head = () if self.summary is None else (summary_message(self.summary.text),)
        return (*head, *(message for turn in self.turns for message in turn.messages()))


def summary_message(text: str) -> ChatMessage:
    return ChatMessage(role="system", content=f"Summary of the earlier conversation:\n{text}")


def turns_needed(policy: MemoryPolicy, counter: TextCounter | None = None) -> int | None:
    """How many of the newest turns `plan_recall` can keep at most (None: any number), so a store loads no more.

    Under `tokens` every turn costs at least what an empty one does (its chat
    framing); two tokens of that are left as slack because a chat template's
    tokenizer may merge a message's first or last character with the framing.
    Under `summary` every turn the summary does not cover yet may be needed
    (the overflow is folded in), so the bound there is the summary's `after`.
    """
    match policy.kind:
        case "none":
            return 0
        case "window":
            return policy.turns
        case "tokens":
            assert policy.max_tokens is not None
            cheapest = turn_tokens(_need(counter, policy), Turn(user="", assistant="")) - 2
            return policy.max_tokens // cheapest if cheapest > 0 else None
        case _:
            return None


def plan_recall(
    policy: MemoryPolicy,
    turns: Sequence[Turn],
    *,
    summary: Summary | None = None,
    counter: TextCounter | None = None,
    first: int = 0,
) -> Recall:
    """`turns` are the conversation's turns from number `first` on (a store may skip the ones a summary covers)."""
    match policy.kind:
        case "none":
            return Recall(turns=())
        case "full":
            return Recall(turns=tuple(turns))
        case "window":
            assert policy.turns is not None  # guaranteed by MemoryPolicy's validator
            return Recall(turns=tuple(turns[-policy.turns :]))
        case "tokens":
            assert policy.max_tokens is not None
            return Recall(turns=_newest_within(turns, policy.max_tokens, _need(counter, policy)))
        case "summary":
            assert policy.max_tokens is not None
            covered = summary.turns_covered if summary is not None else 0
            fresh = turns[max(0, covered - first) :]
            kept = _newest_within(fresh, policy.max_tokens, _need(counter, policy))
            return Recall(turns=kept, summary=summary, overflow=tuple(fresh[: len(fresh) - len(kept)]))


def bound_messages(
    policy: MemoryPolicy, messages: Sequence[ChatMessage], counter: TextCounter | None = None
) -> tuple[ChatMessage, ...]:
    """A caller's `messages` within the business's memory policy.

    The leading system messages and the last message (what the caller asks
    now) are always kept; of the history between them, `window` keeps the
    messages of the last `turns` turns (two per turn) and `tokens`/`summary`
    the newest messages within `max_tokens` (nothing is summarised: the caller
    owns this history). `none` and `full` keep it all; the router's character
    limit still bounds it. Without a counter the token policies keep it all too.
    """
    if len(messages) < 2:
        return tuple(messages)
    lead = 0
    while lead < len(messages) - 1 and messages[lead].role == "system":
        lead += 1
    history = messages[lead:-1]
    kept: Sequence[ChatMessage] = history
    if policy.kind == "window":
        assert policy.turns is not None
        kept = history[len(history) - min(len(history), 2 * policy.turns) :]
    elif policy.kind in ("tokens", "summary") and counter is not None:
        assert policy.max_tokens is not None
        used, start = 0, len(history)
        for index in range(len(history) - 1, -1, -1):
            used += counter.count(history[index].content)
            if used > policy.max_tokens:
                break
            start = index
        kept = history[start:]
    return (*messages[:lead], *kept, messages[-1])


def turn_tokens(counter: TextCounter, turn: Turn) -> int:
    """Tokens this turn adds to a prompt: with chat framing when the counter knows it."""
    count_messages = getattr(counter, "count_messages", None)
    if count_messages is not None:
        # count_messages includes the one-off reply primer; the marginal cost of a turn does not.
        return int(count_messages(turn.messages())) - int(count_messages(()))
    return counter.count(turn.user) + counter.count(turn.assistant)


def _newest_within(turns: Sequence[Turn], budget: int, counter: TextCounter) -> tuple[Turn, ...]:
    used = 0
    start = len(turns)
    for index in range(len(turns) - 1, -1, -1):
        used += turn_tokens(counter, turns[index])
        if used > budget:
            break
        start = index
    return tuple(turns[start:])


def _need(counter: TextCounter | None, policy: MemoryPolicy) -> TextCounter:
    if counter is None:
        raise ValueError(f"memory policy `{policy.kind}` needs a token counter")
    return counter
