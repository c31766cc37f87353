"""What every model client offers: one async `complete` call, a `Completion`, and typed failures.

Clients retry transient failures themselves (with backoff); what escapes a
client has already used its retries, so the pool decides between falling
back to another model and answering the caller with the typed error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from relaychain.bus.errors import AgentError, RetryableError
from relaychain.schemas import ChatMessage
from relaychain.schemas.errors import ErrorCode

__all__ = [
    "FALLBACK_ERRORS",
    "ChatModel",
    "Completion",
    "FinishReason",
    "ModelBusy",
    "ModelOutputInvalid",
    "ModelRateLimited",
    "ModelRequestRejected",
    "ModelServerError",
    "ModelTimeout",
    "ModelUnavailable",
    "TokenCallback",
]

FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "unknown"]
TokenCallback = Callable[[str], None]
"""Receives each piece of text as it is generated; called on the event loop's thread."""


class Completion(BaseModel):
    """One model call's answer and its exact usage."""

    model_config = ConfigDict(frozen=True)

    text: str
    model: str = Field(description="Config name of the model that answered (after any fallback).")
    response_model: str = Field(description="The model id the provider reports, e.g. gpt-4o-mini-2024-07-18.")
    provider: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    finish_reason: FinishReason
    latency_ms: float = Field(ge=0)


class ChatModel(Protocol):
    """A chat model. `on_token` set means stream; the returned `Completion` is the same either way."""

    name: str

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float | None = None,
        timeout_s: float | None = None,
        json_schema: dict[str, Any] | None = None,
        on_token: TokenCallback | None = None,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


def _details(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, **{k: v for k, v in extra.items() if v is not None}}


class ModelTimeout(AgentError):
    """No answer within the timeout, every attempt."""

    def __init__(self, model: str, timeout_s: float, *, attempts: int = 1) -> None:
        super().__init__(
            ErrorCode.MODEL_TIMEOUT,
            f"model {model!r} gave no answer within {timeout_s:g} s ({attempts} attempt(s))",
            details=_details(model, timeout_s=timeout_s, attempts=attempts),
        )


class ModelRateLimited(RetryableError):
    """Still rate limited after the client's retries; the runtime retries the step later."""

    def __init__(self, model: str, message: str, *, attempts: int = 1) -> None:
        super().__init__(
            ErrorCode.MODEL_RATE_LIMITED,
            f"model {model!r} is rate limited: {message}",
            details=_details(model, attempts=attempts),
        )


class ModelServerError(AgentError):
    """The provider kept failing (5xx, dropped connections) through every retry."""

    def __init__(
        self, model: str, message: str, *, status: int | None = None, attempts: int = 1, streamed: bool = False
    ) -> None:
        super().__init__(
            ErrorCode.MODEL_SERVER_ERROR,
            f"model {model!r} failed: {message}",
            details=_details(model, status=status, attempts=attempts, streamed=streamed or None),
        )


class ModelUnavailable(AgentError):
    """The model cannot be used at all: marked unavailable, no API key, unknown to the provider, no weights."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(
            ErrorCode.MODEL_UNAVAILABLE, f"model {model!r} is unavailable: {message}", details=_details(model)
        )


class ModelRequestRejected(AgentError):
    """The provider refused this request (4xx other than auth/not-found/429): another model would not help."""

    def __init__(self, model: str, message: str, *, status: int | None = None) -> None:
        super().__init__(
            ErrorCode.MODEL_REQUEST_REJECTED,
            f"model {model!r} rejected the request: {message}",
            details=_details(model, status=status),
        )


class ModelOutputInvalid(AgentError):
    """The provider's answer could not be read (no choices, malformed body)."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(
            ErrorCode.MODEL_OUTPUT_INVALID,
            f"model {model!r} returned an unreadable answer: {message}",
            details=_details(model),
        )


class ModelBusy(RetryableError):
    """A local model's request queue is full: back-pressure, retried later by the runtime."""

    def __init__(self, model: str, queued: int) -> None:
        super().__init__(
            ErrorCode.MODEL_BUSY,
            f"model {model!r} has {queued} requests queued",
            details=_details(model, queued=queued),
        )


FALLBACK_ERRORS: tuple[type[AgentError], ...] = (
    ModelTimeout,
    ModelRateLimited,
    ModelServerError,
    ModelUnavailable,
    ModelBusy,
)
"""Failures of the model rather than of the request: a fallback model may succeed."""
