"""relaychain: event-driven LLM agents on an embedded bus or Kafka.

The public API (see docs/api.md); everything else may change between versions:

    from relaychain import App, Client, Agent, Settings, load_settings
    from relaychain.testing import AgentHarness

Names load on first use, so `import relaychain.schemas` in a publisher stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaychain.agent import Agent
    from relaychain.application import App, insert_step
    from relaychain.bus.errors import AgentError, RetryableError
    from relaychain.bus.runtime import RetryPolicy
    from relaychain.client import AnswerTimeout, Client, Progress
    from relaychain.schemas.envelope import Error, Event
    from relaychain.schemas.errors import ErrorCode
    from relaychain.schemas.events import Blocked, Job, Request, Response, Usage
    from relaychain.settings import ConfigError, Settings, load_settings

__all__ = [
    "Agent",
    "AgentError",
    "AnswerTimeout",
    "App",
    "Blocked",
    "Client",
    "ConfigError",
    "Error",
    "ErrorCode",
    "Event",
    "Job",
    "Progress",
    "Request",
    "Response",
    "RetryPolicy",
    "RetryableError",
    "Settings",
    "Usage",
    "insert_step",
    "load_settings",
]

_HOMES = {
    "Agent": "relaychain.agent",
    "App": "relaychain.application",
    "insert_step": "relaychain.application",
    "AgentError": "relaychain.bus.errors",
    "RetryableError": "relaychain.bus.errors",
    "RetryPolicy": "relaychain.bus.runtime",
    "AnswerTimeout": "relaychain.client",
    "Client": "relaychain.client",
    "Progress": "relaychain.client",
    "Error": "relaychain.schemas.envelope",
    "Event": "relaychain.schemas.envelope",
    "ErrorCode": "relaychain.schemas.errors",
    "Blocked": "relaychain.schemas.events",
    "Job": "relaychain.schemas.events",
    "Request": "relaychain.schemas.events",
    "Response": "relaychain.schemas.events",
    "Usage": "relaychain.schemas.events",
    "ConfigError": "relaychain.settings",
    "Settings": "relaychain.settings",
    "load_settings": "relaychain.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'relaychain' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
