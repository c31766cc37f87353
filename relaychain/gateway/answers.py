"""Requests the gateway published, with their answers, kept for a bounded time and count."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from relaychain.schemas import Event, Request

Status = Literal["pending", "cancelling", "done"]


@dataclass
class Tracked:
    request: Request
    tenant: str | None
    created: float = field(default_factory=time.monotonic)
    status: Status = "pending"
    answer: Event | None = None

    def view(self) -> dict:
        body: dict = {"request_id": self.request.request_id, "business": self.request.business, "status": self.status}
        if self.answer is not None:
            body["answer"] = self.answer.model_dump(mode="json")
        return body


class AnswerStore:
    """Oldest entries go first, past `capacity` or `ttl_s`; a pending one past its TTL is forgotten too."""

    def __init__(self, *, capacity: int = 10_000, ttl_s: float = 900.0) -> None:
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._entries: OrderedDict[str, Tracked] = OrderedDict()

    def add(self, request: Request, tenant: str | None) -> Tracked:
        self._expire()
        tracked = self._entries[request.request_id] = Tracked(request, tenant)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return tracked

    def get(self, request_id: str) -> Tracked | None:
        self._expire()
        return self._entries.get(request_id)

    def answered(self, answer: Event) -> None:
        tracked = self._entries.get(answer.request_id)
        if tracked is not None and tracked.answer is None:
            tracked.answer = answer
            tracked.status = "done"

    def _expire(self) -> None:
        horizon = time.monotonic() - self._ttl_s
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.created >= horizon:
                return
            self._entries.popitem(last=False)
