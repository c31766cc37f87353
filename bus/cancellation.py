"""Which requests were cancelled lately, and the runtime's hook that drops their queued work.

The bus knows nothing of what a request's work is: the composition root
decides, through an `AnswerInstead` policy, which events of a cancelled
request are dropped and what answer goes out in their place.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Protocol

from relaychain.schemas.envelope import Event


class CancelledRequests:
    """A bounded set of cancelled request ids with their reasons, and one signal per id to wait on."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._reasons: OrderedDict[str, str] = OrderedDict()
        self._signals: dict[str, asyncio.Event] = {}

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._reasons

    def __len__(self) -> int:
        return len(self._reasons)

    def reason(self, request_id: str) -> str | None:
        return self._reasons.get(request_id)

    def cancel(self, request_id: str, reason: str) -> None:
        self._reasons.setdefault(request_id, reason)
        if len(self._reasons) > self._capacity:
            self._reasons.popitem(last=False)
        signal = self._signals.get(request_id)
        if signal is not None:
            signal.set()

    def signal(self, request_id: str) -> asyncio.Event:
        """Set when `request_id` is cancelled; `release` it when the work it guards is over."""
        signal = self._signals.get(request_id)
        if signal is None:
            signal = self._signals[request_id] = asyncio.Event()
            if request_id in self._reasons:
                signal.set()
        return signal

    def release(self, request_id: str) -> None:
        self._signals.pop(request_id, None)


class AnswerInstead(Protocol):
    """Consulted by the runtime before an agent handles an event."""

    def answer_instead(self, event: Event) -> Event | None:
        """The answer to publish in place of handling `event` (which is then dropped), or None to handle it."""
        ...
