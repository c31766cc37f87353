"""Trivial agents for the foundation's process-level tests (`relaychain worker tests.support.agents:Echo`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from relaychain.schemas import Event, Job, Request, Response


class Echo:
    """Answers a request (or a routed job) with its input; sleeps RELAYCHAIN_TEST_SLEEP_S first."""

    name = "echo"

    async def handle(self, event: Event) -> Sequence[Event]:
        await asyncio.sleep(float(os.environ.get("RELAYCHAIN_TEST_SLEEP_S", "0")))
        request = event.request if isinstance(event, Job) else event
        assert isinstance(request, Request)
        return [event.reply(Response, model="echo", output={"echo": request.input, "pid": os.getpid()})]


class Forwarder:
    """Routes a request on to step `echo.next`: the first hop of a two-process trace."""

    name = "forwarder"

    async def handle(self, event: Event) -> Sequence[Event]:
        assert isinstance(event, Request)
        return [event.reply(Job, request=event, model="echo", slip=("echo.next",))]
