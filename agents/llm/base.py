"""What every model client offers: one async `complete(request)` call, a `Completion`, and typed failures.

Clients make one attempt per call. A transient failure (429, 5xx, timeout)
escapes as a `RetryableError` carrying any `Retry-After`, and the runtime's
backoff owns the retrying (one retry layer, not clients inside runtime
attempts); the pool falls back to another model on failures of the model
rather than of the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from relaychain.agents.weights import WeightsMissing
from relaychain.bus.errors import AgentError, RetryableError
from relaychain.schemas import ChatMessage
from relaychain.schemas.errors import ErrorCode

__all__ = [
    "FALLBACK_ERRORS",
    "ChatModel",
    "Completion",
    "CompletionRequest",
    "DeltaCallback",
    "EngineNotInstalled",
    "FinishReason",
    "ModelBusy",
    "ModelOutputInvalid",
    "ModelRateLimited",
    "ModelRequestRejected",
    "ModelServerError",
    "ModelTimeout",
    "ModelUnavailable",
]

FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "cancelled", "unknown"]
DeltaCallback = Callable[[str], Awaitable[None]]
"""Awaited with each piece of text as it is generated, in order, on the event loop's thread."""


@dataclass(frozen=True, kw_only=True)
class CompletionRequest:
    """One model call: what every client and the pool take, so the parameter list lives here only.

    `on_delta` set means stream; the returned `Completion` is the same either
    way. `cancelled` set stops generation (local engines within a token, the
    OpenAI stream is closed) and the call returns `finish_reason="cancelled"`
    with the tokens actually generated, so they are still billed.
    """

    messages: Sequence[ChatMessage]
    max_tokens: int
    temperature: float | None = None
    timeout_s: float | None = None
    json_schema: dict[str, Any] | None = None
    on_delta: DeltaCallback | None = None
    cancelled: asyncio.Event | None = None


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
    cached_input_tokens: int = Field(default=0, ge=0, description="Prompt tokens the provider served from its cache.")
    reasoning_tokens: int = Field(default=0, ge=0, description="Output tokens spent on reasoning (part of output).")


class ChatModel(Protocol):
    """A chat model: one attempt per `complete`; `load` brings its weights into memory (a no-op for remote models)."""

    name: str

    async def complete(self, request: CompletionRequest) -> Completion: ...

    async def load(self) -> None: ...

    async def aclose(self) -> None: ...


def _details(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, **{k: v for k, v in extra.items() if v is not None}}


class ModelTimeout(RetryableError):
    """No answer within the timeout; the runtime may retry the step."""

    def __init__(self, model: str, timeout_s: float) -> None:
        super().__init__(
            ErrorCode.MODEL_TIMEOUT,
            f"model {model!r} gave no answer within {timeout_s:g} s",
            details=_details(model, timeout_s=timeout_s),
        )
        self.retry_after_s: float | None = None


class ModelRateLimited(RetryableError):
    """Rate limited (429); the runtime retries the step after `retry_after_s` when the provider said so."""

    def __init__(self, model: str, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(
            ErrorCode.MODEL_RATE_LIMITED,
            f"model {model!r} is rate limited: {message}",
            details=_details(model, retry_after_s=retry_after_s),
        )
        self.retry_after_s = retry_after_s


class ModelServerError(RetryableError):
    """The provider failed (5xx, dropped connection); retried by the runtime unless text was already streamed."""

    def __init__(
        self,
        model: str,
        message: str,
        *,
        status: int | None = None,
        streamed: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            ErrorCode.MODEL_SERVER_ERROR,
            f"model {model!r} failed: {message}",
            details=_details(model, status=status, streamed=streamed or None, retry_after_s=retry_after_s),
        )
        self.retry_after_s = retry_after_s
        # Text already handed to the caller cannot be taken back: a retry would show it twice.
        self.retryable = not streamed


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


class EngineNotInstalled(AgentError):
    """The engine a model needs is not installed in this worker; `details["package"]` is what to pip install."""

    def __init__(self, model: str, package: str) -> None:
        super().__init__(
            ErrorCode.MODEL_ENGINE_MISSING,
            f"model {model!r} needs the package {package}: pip install {package!r}",
            details=_details(model, package=package),
        )


FALLBACK_ERRORS: tuple[type[AgentError], ...] = (
    ModelTimeout,
    ModelRateLimited,
    ModelServerError,
    ModelUnavailable,
    ModelBusy,
    EngineNotInstalled,
    WeightsMissing,
)
"""Failures of the model rather than of the request: a fallback model may succeed."""
