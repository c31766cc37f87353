"""Typed events: the envelope every event shares, and relaychain's public events."""

from relaychain.schemas.envelope import (
    SCHEMA_VERSION,
    DeadLetter,
    Error,
    Event,
    StepRecord,
    derived_id,
    new_id,
)
from relaychain.schemas.errors import ErrorCode
from relaychain.schemas.events import (
    ANSWERS,
    PUBLIC_EVENTS,
    Blocked,
    ChatMessage,
    Job,
    ModerationOutcome,
    Money,
    Request,
    RequestOptions,
    Response,
    RetrievedChunk,
    StepUsage,
    Usage,
)

__all__ = [
    "ANSWERS",
    "PUBLIC_EVENTS",
    "SCHEMA_VERSION",
    "Blocked",
    "ChatMessage",
    "DeadLetter",
    "Error",
    "ErrorCode",
    "Event",
    "Job",
    "ModerationOutcome",
    "Money",
    "Request",
    "RequestOptions",
    "Response",
    "RetrievedChunk",
    "StepRecord",
    "StepUsage",
    "Usage",
    "derived_id",
    "new_id",
]
