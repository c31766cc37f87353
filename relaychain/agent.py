"""`relaychain.Agent`: the base class of your own agent, hosted like the built-in ones.

    class SentimentTagger(Agent[Job]):
        name = "sentiment"
        consumes = Job
        emits = (Job,)

        async def process(self, job: Job) -> Job:
            return job.advance(self.name, prompt=...)

The class declares what it reads (`consumes`, checked before `process` runs),
what it may emit (`emits`, checked after), both among the public events of
`relaychain.schemas` (the ones the bus carries), where it listens (`inbox`,
`relaychain.<name>` by default), its consumer group (`relaychain.<name>`) and
its retry policy for `RetryableError` (the runtime's when unset). The slip step
it serves is `name` unless `step` says otherwise; put that step in a
business's `steps` and route it with `runtime.routes` (`App` does the routing
for you). Raise `AgentError` with an `ErrorCode` (or your own stable code) for
a request you cannot serve: the caller gets a typed `Error`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from relaychain import topology
from relaychain.bus.errors import AgentError
from relaychain.bus.runtime import RetryPolicy
from relaychain.schemas.envelope import DeadLetter, Error, Event
from relaychain.schemas.errors import ErrorCode
from relaychain.schemas.events import PUBLIC_EVENTS

__all__ = ["Agent"]

In = TypeVar("In", bound=Event)


class Agent(ABC, Generic[In]):
    name: str
    consumes: ClassVar[type[Event]] = Event
    emits: ClassVar[tuple[type[Event], ...]] = ()
    inbox: ClassVar[tuple[str, ...]] = ()
    group: ClassVar[str] = ""
    step: ClassVar[str] = ""
    retry: ClassVar[RetryPolicy | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return  # an abstract intermediate class; its concrete subclasses name themselves
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{cls.__name__}.name must be an identifier, got {name!r}")
        # The bus decodes by the `type` field into the public events: an event class of your own would not
        # survive the trip through Kafka, so it is refused here rather than dead-lettered there.
        if cls.consumes not in PUBLIC_EVENTS:
            raise TypeError(f"{cls.__name__}.consumes must be one of {_names(PUBLIC_EVENTS)}")
        if not cls.emits or not set(cls.emits) <= set(PUBLIC_EVENTS):
            raise TypeError(f"{cls.__name__}.emits must name the events it emits, among {_names(PUBLIC_EVENTS)}")
        cls.inbox = tuple(cls.__dict__.get("inbox") or (f"{topology.PREFIX}{name}",))
        cls.group = cls.__dict__.get("group") or topology.group_of(name)
        cls.step = cls.__dict__.get("step") or name

    async def handle(self, event: Event) -> Sequence[Event]:
        """The runtime's entry point: checks the input and output types around `process`."""
        if not isinstance(event, self.consumes):
            raise AgentError(
                ErrorCode.UNEXPECTED_EVENT,
                f"{self.name} reads {self.consumes.__name__} events, got a {event.type} event",
                details={"type": event.type},
            )
        result = await self.process(event)  # type: ignore[arg-type]  # checked above: `consumes` is `In`
        outputs = [] if result is None else [result] if isinstance(result, Event) else list(result)
        allowed: tuple[type[Event], ...] = (*self.emits, Error, DeadLetter)
        for output in outputs:
            if not isinstance(output, allowed):
                # A bug in the agent, not in the request: the runtime answers `internal_error` and dead-letters.
                raise TypeError(
                    f"{self.name} emitted a {type(output).__name__}; it declares {[t.__name__ for t in self.emits]}"
                )
        return outputs

    @abstractmethod
    async def process(self, event: In) -> Event | Sequence[Event] | None:
        """Your agent's work: return the event(s) to emit, or None to emit nothing."""


def _names(types: tuple[type[Event], ...]) -> str:
    return ", ".join(t.__name__ for t in types)
