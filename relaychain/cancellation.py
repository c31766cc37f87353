"""Cancellation on the agents' side: follow the control topic, drop the jobs of cancelled requests.

Every process hosting agents reads the whole control topic in a group of
its own (a cancel must reach whichever member holds the request's work).
A job of a cancelled request is answered with `Cancelled` instead of being
handled; side-channel events (usage, memory saves) still run, so what was
generated before the cancel is billed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from relaychain import topology
from relaychain.bus.cancellation import CancelledRequests
from relaychain.bus.runtime import AgentRuntime
from relaychain.schemas import Cancel, Cancelled, Event, Job

__all__ = ["CancelJobs", "ControlAgent", "follow_cancellations"]


class CancelJobs:
    """The runtime's `AnswerInstead` policy: a cancelled request's job becomes its `Cancelled` answer."""

    def __init__(self, cancelled: CancelledRequests) -> None:
        self.cancelled = cancelled

    def answer_instead(self, event: Event) -> Event | None:
        if not isinstance(event, Job) or event.request_id not in self.cancelled:
            return None
        return event.reply(
            Cancelled,
            reason=self.cancelled.reason(event.request_id) or "cancelled",
            step=event.current_step,
            usage=event.usage,
        )


class ControlAgent:
    """Records every `Cancel` it reads; emits nothing."""

    name = "control"

    def __init__(self, cancelled: CancelledRequests) -> None:
        self._cancelled = cancelled

    async def handle(self, event: Event) -> Sequence[Event]:
        if isinstance(event, Cancel):
            self._cancelled.cancel(event.request_id, event.reason)
        return []


async def follow_cancellations(runtime: AgentRuntime, cancelled: CancelledRequests) -> None:
    await runtime.add(
        ControlAgent(cancelled), [topology.CONTROL], group=f"{topology.PREFIX}control.{uuid.uuid4().hex[:12]}"
    )
