"""The fields every event carries, whatever its type.

An event is the unit the bus moves and agents handle. Its identity (`id`) is
what agents deduplicate on; its correlation (`request_id`, `conversation_id`)
is what callers match answers with; its `slip` is the ordered list of steps
still to run, so no central orchestrator is needed.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import os
import threading
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1
"""The newest event schema this code understands; newer events are dead-lettered, not guessed at."""


_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


class _RandomIds:
    """Version-4 UUIDs (as 32 hex digits) cut from 4 KiB of `os.urandom` at a time.

    One `os.urandom` per id was a system call per event that released the GIL,
    handing it to the database and span-export threads and waiting to get it
    back. A lock keeps two threads from cutting the same bytes; a forked child
    drops what its parent had read, so no two processes hand out the same id.
    """

    _IDS_PER_READ = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def next(self) -> str:
        with self._lock:
            if self._at >= len(self._bytes):
                self._bytes, self._at = os.urandom(16 * self._IDS_PER_READ), 0
            chunk = self._bytes[self._at : self._at + 16]
            self._at += 16
        # What uuid.UUID(version=4) sets: the RFC 4122 variant and the version, without building the object.
        return f"{int.from_bytes(chunk) & _UUID4_CLEAR | _UUID4_SET:032x}"

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._bytes, self._at = b"", 0


_random_ids = _RandomIds()


def new_id() -> str:
    return _random_ids.next()


def derived_id(parent_id: str, salt: str) -> str:
    """A stable id for an event derived from another one.

    A redelivered input re-run by a restarted worker yields outputs with the
    same ids as the first run, so every downstream consumer can drop them.
    """
    return hashlib.blake2b(f"{parent_id}/{salt}".encode(), digest_size=16).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


class StepRecord(BaseModel):
    """One finished step on the slip and the agent that ran it."""

    model_config = ConfigDict(frozen=True)

    step: str
    agent: str


@functools.lru_cache(maxsize=1024)
def _step_record(step: str, agent: str) -> StepRecord:
    """Records are immutable and few distinct ones exist: one per (step, agent) pair is enough."""
    return StepRecord(step=step, agent=agent)


class Event(BaseModel):
    """Base of every event on the bus. Subclasses pin `type` with a Literal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_id, description="Unique event id; agents are idempotent on it.")
    type: str
    schema_version: int = SCHEMA_VERSION
    request_id: str = Field(default_factory=new_id, description="Correlation id of the request this event belongs to.")
    conversation_id: str | None = None
    business: str = ""
    created_at: datetime = Field(default_factory=utc_now)
    attempt: int = Field(default=0, ge=0, description="Delivery attempts already made for this event.")
    slip: tuple[str, ...] = Field(default=(), description="Steps still to run, the current one first.")
    results: tuple[StepRecord, ...] = Field(default=(), description="Steps already run, oldest first.")
    deadline: datetime | None = Field(
        default=None,
        description="When the caller stops waiting; an agent receiving the event later answers deadline_exceeded.",
    )
    tenant: str | None = Field(
        default=None, description="The tenant whose API key the request came in with; billed and budgeted per tenant."
    )

    @property
    def key(self) -> str:
        """Partition key: one conversation's turns keep their order."""
        return self.conversation_id or self.request_id

    @property
    def current_step(self) -> str | None:
        return self.slip[0] if self.slip else None

    def advance(self, agent: str, **updates: Any) -> Self:
        """This event with its current step done: the step moves from `slip` to `results`.

        `updates` are validated like the constructor's fields (an unknown name
        or a wrong type raises here, in the agent that made the mistake, not in
        the next agent that decodes the event); the slip and the results are
        the runtime's to move, not an agent's to set.
        """
        if not self.slip:
            raise ValueError(f"{self.type} event {self.id} has no step left to advance")
        record = _step_record(self.slip[0], agent)
        validated = {name: _field_adapter(type(self), name).validate_python(value) for name, value in updates.items()}
        return self.copy_with(**validated, slip=self.slip[1:], results=(*self.results, record))

    def copy_with(self, **valid: Any) -> Self:
        """This event with some fields replaced by values already valid for them (they are not validated).

        `model_copy(update=...)` does the same through generic copies of the
        model's parts; events are copied on every hop, and this takes half the time.
        """
        extra, private = self.__pydantic_extra__, getattr(self, "__pydantic_private__", None)
        if extra is not None or private is not None:
            return self.model_copy(update=valid)  # a subclass that allows extra fields or has private ones
        copied = object.__new__(type(self))
        _set(copied, "__dict__", {**self.__dict__, **valid})
        _set(copied, "__pydantic_extra__", None)
        _set(copied, "__pydantic_fields_set__", self.__pydantic_fields_set__ | valid.keys())
        _set(copied, "__pydantic_private__", None)
        return copied

    def reply(self, event_type: builtins.type[E], **fields: Any) -> E:
        """A new event of `event_type` correlated with this one (same request, conversation, business).

        Built through the constructor, so every field is validated; correlation is this event's to give.
        """
        taken = _CORRELATION & fields.keys()
        if taken:
            raise TypeError(f"reply() sets {', '.join(sorted(taken))} from the event it answers")
        return event_type(
            request_id=self.request_id,
            conversation_id=self.conversation_id,
            business=self.business,
            deadline=self.deadline,
            tenant=self.tenant,
            **fields,
        )


E = TypeVar("E", bound=Event)

_set = object.__setattr__
"""Sets an attribute of a frozen model, as pydantic itself does when it copies one."""

_CORRELATION = frozenset({"request_id", "conversation_id", "business"})
_NOT_UPDATABLE = frozenset({"id", "type", "schema_version", "slip", "results"})


@functools.cache
def _field_adapter(event_type: type[Event], name: str) -> TypeAdapter[Any]:
    """A validator for one field of one event type, with the field's constraints; built once per pair."""
    field = event_type.model_fields.get(name)
    if field is None or name in _NOT_UPDATABLE:
        raise TypeError(f"{event_type.__name__}.advance() cannot set {name!r}: not an updatable field of the event")
    annotation: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return TypeAdapter(annotation)


class Error(Event):
    """A request that could not be answered; the caller still gets this."""

    type: Literal["error"] = "error"
    code: str = Field(description="Stable machine-readable code, e.g. `unknown_business`.")
    message: str
    agent: str
    step: str | None = None
    retryable: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


class DeadLetter(Event):
    """A message no agent could handle, kept whole with the reason."""

    type: Literal["dead_letter"] = "dead_letter"
    reason: str = Field(
        description=(
            "Stable code: undecodable, unknown_type, schema_too_new, retries_exhausted, handler_crashed, "
            "unroutable, encoding_failed, event_too_large, publish_failed, middleware_failed."
        )
    )
    error: str
    agent: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    original: str = Field(description="The original message value, decoded as UTF-8 with replacement.")
    original_headers: dict[str, str] = Field(default_factory=dict)
