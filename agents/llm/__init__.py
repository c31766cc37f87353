"""Model clients: OpenAI and OpenAI-compatible servers, local transformers models, and the fallback pool.

`relaychain.agents.llm.local` (torch, transformers) is imported only when a local model is built.
"""

from relaychain.agents.llm.base import (
    FALLBACK_ERRORS,
    ChatModel,
    Completion,
    FinishReason,
    ModelBusy,
    ModelOutputInvalid,
    ModelRateLimited,
    ModelRequestRejected,
    ModelServerError,
    ModelTimeout,
    ModelUnavailable,
    TokenCallback,
)
from relaychain.agents.llm.openai_chat import Backoff, OpenAIChatModel
from relaychain.agents.llm.pool import ModelFactory, ModelPool, default_factories

__all__ = [
    "FALLBACK_ERRORS",
    "Backoff",
    "ChatModel",
    "Completion",
    "FinishReason",
    "ModelBusy",
    "ModelFactory",
    "ModelOutputInvalid",
    "ModelPool",
    "ModelRateLimited",
    "ModelRequestRejected",
    "ModelServerError",
    "ModelTimeout",
    "ModelUnavailable",
    "OpenAIChatModel",
    "TokenCallback",
    "default_factories",
]
