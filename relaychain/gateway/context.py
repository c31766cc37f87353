"""What the HTTP handlers share: the host (bus, hub, keys, limits), open-stream counts, background cancels."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request as HttpRequest

from relaychain.gateway.answers import Tracked
from relaychain.gateway.errors import HttpProblem
from relaychain.gateway.host import GatewayHost
from relaychain.gateway.hub import RequestHub, StreamItem
from relaychain.gateway.intake import StreamSlots, tenant_of
from relaychain.gateway.streaming import Item, follow
from relaychain.schemas import Event

log = logging.getLogger(__name__)


class GatewayContext:
    def __init__(self, host: GatewayHost) -> None:
        self.host = host
        self.settings = host.settings
        self.keys = host.keys
        self.limits = host.limits
        self.streams = StreamSlots(host.limits.max_streams_per_key)
        self._background: set[asyncio.Task[object]] = set()

    @property
    def hub(self) -> RequestHub:
        if self.host.hub is None:
            raise HttpProblem(503, "not_ready", "the gateway is starting or stopping")
        return self.host.hub

    def owned(self, http: HttpRequest, request_id: str) -> Tracked:
        """The tracked request if the caller may see it: 404 unknown (or expired), 403 another tenant's."""
        tenant = tenant_of(http, self.keys)
        tracked = self.hub.answers.get(request_id)
        if tracked is None:
            raise HttpProblem(404, "unknown_request", f"no request {request_id} (answers are kept for a while only)")
        if tracked.tenant != tenant:
            raise HttpProblem(403, "forbidden", "the request belongs to another tenant")
        return tracked

    def follow(
        self, request_id: str, queue: asyncio.Queue[StreamItem], answer: asyncio.Future[Event]
    ) -> AsyncIterator[Item]:
        """A request's stream items until its answer; a client that goes away cancels the request."""
        return follow(
            self.hub,
            request_id,
            queue,
            answer,
            timeout_s=self.limits.answer_timeout_s,
            on_abandon=lambda: self.cancel_later(request_id, "client_disconnected"),
        )

    def cancel_later(self, request_id: str, reason: str) -> None:
        """Cancel from a place that cannot await (a disconnect tearing a response down)."""
        if self.host.hub is None:
            return
        task = asyncio.get_running_loop().create_task(self.host.hub.cancel(request_id, reason=reason))
        self._background.add(task)
        task.add_done_callback(self._cancelled)

    def _cancelled(self, task: asyncio.Task[object]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The request still gets its answer; only the early stop of its work was lost.
            log.warning("cancel not published: %r", task.exception())
