"""The public events of relaychain and the job that travels along a slip."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relaychain.schemas.envelope import DeadLetter, Error, Event


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str | None = None


class RequestOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = False
    timeout_s: float | None = Field(default=None, gt=0)


class Request(Event):
    """What a publisher puts on the requests topic."""

    type: Literal["request"] = "request"
    model: str | None = Field(default=None, description="Model hint; used when the business allows it.")
    input: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    vars: dict[str, Any] = Field(default_factory=dict, description="Template variables: data, never template code.")
    options: RequestOptions = RequestOptions()

    @property
    def text(self) -> str:
        """The user's text, defined once for every agent: `input`, else the last user message, else the last message."""
        if self.input is not None:
            return self.input
        users = [message.content for message in self.messages if message.role == "user"]
        return users[-1] if users else self.messages[-1].content

    @model_validator(mode="after")
    def _has_input(self) -> Request:
        if self.input is None and not self.messages:
            raise ValueError("a request needs `input` or `messages`")
        return self


class Money(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: Decimal
    currency: str


class AppliedPrice(BaseModel):
    """The unit prices a call was billed at (kept with the usage, so a later price change never reprices it)."""

    model_config = ConfigDict(frozen=True)

    input_per_million: Decimal
    cached_input_per_million: Decimal
    output_per_million: Decimal
    effective_from: date | None = None
    tier: int = Field(default=0, ge=0, description="0 for the base price, n for the n-th long-context tier.")


class StepUsage(BaseModel):
    """Tokens and price of one model call."""

    model_config = ConfigDict(frozen=True)

    step: str
    model: str
    input_tokens: int = Field(ge=0, description="Every prompt token, cached ones included.")
    output_tokens: int = Field(ge=0, description="Every completion token, reasoning ones included.")
    cached_input_tokens: int = Field(default=0, ge=0, description="Prompt tokens served from the provider's cache.")
    reasoning_tokens: int = Field(default=0, ge=0, description="Output tokens spent on reasoning (billed as output).")
    price: AppliedPrice | None = None
    finish_reason: str | None = Field(default=None, description="Why the model stopped: stop, length, cancelled...")
    input_cost: Decimal = Decimal(0)
    output_cost: Decimal = Decimal(0)
    currency: str = "USD"
    latency_ms: float = 0.0

    @property
    def cost(self) -> Decimal:
        return self.input_cost + self.output_cost


class RetrievedChunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    source: str
    location: str = ""
    score: float


class ModerationOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: Literal["input", "output"]
    action: Literal["pass", "flag", "mask", "block"]
    counts: dict[str, int] = Field(default_factory=dict, description="Matches per category; never the words.")


class Job(Event):
    """A routed request on its way along the slip; each step adds to it."""

    type: Literal["job"] = "job"
    request: Request
    model: str
    prompt: tuple[ChatMessage, ...] = ()
    history: tuple[ChatMessage, ...] = ()
    context: tuple[RetrievedChunk, ...] = ()
    outputs: dict[str, str] = Field(default_factory=dict, description="Text output of each generate step by name.")
    usage: tuple[StepUsage, ...] = ()
    moderation: tuple[ModerationOutcome, ...] = ()
    result: dict[str, Any] | None = None
    reasks: int = 0


class Response(Event):
    """The answer to a request: validated output, what it cost, how it went."""

    type: Literal["response"] = "response"
    model: str
    output: dict[str, Any]
    usage: tuple[StepUsage, ...] = ()
    cost: tuple[Money, ...] = ()
    moderation: tuple[ModerationOutcome, ...] = ()
    trace_id: str | None = None


class Blocked(Event):
    """A request or answer stopped by moderation; names categories, never the words."""

    type: Literal["blocked"] = "blocked"
    stage: Literal["input", "output"]
    categories: tuple[str, ...]


class Usage(Event):
    """One model call's tokens and price, for the cost ledger (off the critical path)."""

    type: Literal["usage"] = "usage"
    usage: StepUsage


class Cancelled(Event):
    """The answer to a request cancelled before it finished; what was generated until then is billed."""

    type: Literal["cancelled"] = "cancelled"
    reason: str = Field(default="cancelled", description="Stable code: cancelled, superseded, client_disconnected.")
    step: str | None = Field(default=None, description="The step the request was waiting for or running.")
    usage: tuple[StepUsage, ...] = ()


class Cancel(Event):
    """Asks every agent to drop the work of `request_id`; keyed like the request, on the control topic."""

    type: Literal["cancel"] = "cancel"
    reason: str = "cancelled"


class TokenDelta(Event):
    """Text a generate step produced since the previous delta; best-effort, on the token stream topic.

    The formatter's `Response` stays the authoritative answer: for a JSON
    business the deltas are the raw generation, not the validated output.
    """

    type: Literal["token_delta"] = "token_delta"
    step: str
    index: int = Field(ge=0, description="Position of this delta in the step's stream, from 0.")
    text: str
    tokens: int = Field(default=0, ge=0, description="Pieces the model handed over in this delta.")


PUBLIC_EVENTS: tuple[type[Event], ...] = (
    Request,
    Job,
    Response,
    Error,
    Blocked,
    Cancelled,
    Usage,
    DeadLetter,
    Cancel,
    TokenDelta,
)
ANSWERS: tuple[type[Event], ...] = (Response, Error, Blocked, Cancelled)
