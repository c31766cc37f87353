"""How each agent is built from the process's components (the only place agents meet backends)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agents.router import RouterAgent
from bus.runtime import Agent
from relaychain.app import Components


async def build_router(components: Components) -> Agent:
    return RouterAgent(components.settings.app, components.prompts)


BUILDERS: dict[str, Callable[[Components], Awaitable[Agent]]] = {
    "router": build_router,
}
