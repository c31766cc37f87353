"""Fit a prompt and as much recent history as possible into a model's context window."""

from __future__ import annotations

from collections.abc import Sequence

from relaychain.agents.tokens.counter import TokenCounter
from relaychain.bus.errors import AgentError
from relaychain.schemas import ChatMessage
from relaychain.schemas.errors import ErrorCode

__all__ = ["compose_messages", "fit_history", "split_turns"]


def compose_messages(prompt: Sequence[ChatMessage], history: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages sent to the model: the prompt's leading system messages, the history, the rest of the prompt.

    Counting uses the same order the generator sends, so chat templates that
    add a default system message when none comes first count correctly.
    """
    lead = 0
    while lead < len(prompt) and prompt[lead].role == "system":
        lead += 1
    return [*prompt[:lead], *history, *prompt[lead:]]


def split_turns(history: Sequence[ChatMessage]) -> list[tuple[ChatMessage, ...]]:
    """History cut into turns, each starting at a user message, so a reply is never kept without its question."""
    turns: list[list[ChatMessage]] = []
    for message in history:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return [tuple(turn) for turn in turns]


def fit_history(
    prompt: Sequence[ChatMessage],
    history: Sequence[ChatMessage],
    counter: TokenCounter,
    budget: int,
) -> tuple[tuple[ChatMessage, ...], int]:
    """The newest whole turns of `history` that fit in `budget` tokens with the prompt, and the total count.

    `budget` is the context window minus the tokens reserved for the answer.
    Raises `AgentError(ErrorCode.INPUT_TOO_LONG)` when the prompt alone does not fit.
    Each candidate is counted whole (binary search over how many turns to
    keep), so the result is exact for chat templates too, not a per-message sum.
    """
    prompt_tokens = counter.count_messages(compose_messages(prompt, ()))
    if prompt_tokens > budget:
        raise AgentError(
            ErrorCode.INPUT_TOO_LONG,
            f"the prompt is {prompt_tokens} tokens; at most {budget} fit with the reserved output",
            details={"prompt_tokens": prompt_tokens, "budget": budget},
        )
    turns = split_turns(history)

    def kept(n: int) -> tuple[ChatMessage, ...]:
        return tuple(m for turn in turns[len(turns) - n :] for m in turn)

    best, best_tokens = 0, prompt_tokens
    low, high = 1, len(turns)
    while low <= high:
        mid = (low + high) // 2
        tokens = counter.count_messages(compose_messages(prompt, kept(mid)))
        if tokens <= budget:
            best, best_tokens, low = mid, tokens, mid + 1
        else:
            high = mid - 1
    return kept(best), best_tokens
