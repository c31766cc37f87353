"""Which agent reads which topic: the one map that workers, the embedded runner and the manifests share."""

from __future__ import annotations

PREFIX = "relaychain."

REQUESTS = f"{PREFIX}requests"
RESPONSES = f"{PREFIX}responses"
USAGE = f"{PREFIX}usage"
DEADLETTER = f"{PREFIX}deadletter"
TOKENS = f"{PREFIX}tokens"
"""Token deltas of streaming requests, keyed by request id; best-effort, short retention."""
CONTROL = f"{PREFIX}control"
"""Cancellations, keyed like the request; every process reads all of it in a group of its own."""
TOKENS_RETENTION_MS = 10 * 60 * 1000

AGENTS: tuple[str, ...] = ("router", "moderator", "memory", "retriever", "tokenizer", "generator", "formatter")

AGENT_INBOXES: dict[str, tuple[str, ...]] = {
    "router": (REQUESTS,),
    "moderator": (f"{PREFIX}moderator",),
    "memory": (f"{PREFIX}memory",),
    "retriever": (f"{PREFIX}retriever",),
    "tokenizer": (f"{PREFIX}tokenizer", USAGE),
    "generator": (f"{PREFIX}generator",),
    "formatter": (f"{PREFIX}formatter",),
}

AGENT_EMITS: dict[str, tuple[str, ...]] = {
    "router": ("job",),
    "moderator": ("job", "blocked"),
    "memory": ("job", "usage"),
    "retriever": ("job",),
    "tokenizer": ("job",),
    "generator": ("job", "usage", "token_delta", "cancelled"),
    "formatter": ("job", "response"),
}
"""Event types each agent emits itself; the runtime adds `error` answers and `dead_letter`s for every agent,
and `cancelled` in place of a cancelled request's job."""

ALL_TOPICS: tuple[str, ...] = tuple(
    dict.fromkeys([*(t for inbox in AGENT_INBOXES.values() for t in inbox), RESPONSES, DEADLETTER, TOKENS, CONTROL])
)


def group_of(agent: str) -> str:
    return f"{PREFIX}{agent}"


def step_topic(step: str) -> str:
    """A slip step is `agent` or `agent.detail` (`moderate.input` is the moderator's)."""
    agent = STEP_AGENTS.get(step.split(".", 1)[0])
    if agent is None:
        raise KeyError(f"no agent handles step {step!r}")
    return AGENT_INBOXES[agent][0]


STEP_AGENTS: dict[str, str] = {
    "route": "router",
    "moderate": "moderator",
    "memory": "memory",
    "retrieve": "retriever",
    "budget": "tokenizer",
    "generate": "generator",
    "format": "formatter",
}
