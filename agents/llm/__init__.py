"""Model clients: OpenAI and OpenAI-compatible servers, local llama.cpp and transformers models, and the fallback pool.

`relaychain.agents.llm.llama` (llama-cpp-python) and `relaychain.agents.llm.local`
(torch, transformers) are imported only when such a model is built.
"""

from relaychain.agents.llm.base import (
    FALLBACK_ERRORS,
    ChatModel,
    Completion,
    CompletionRequest,
    DeltaCallback,
    EngineNotInstalled,
    FinishReason,
    ModelBusy,
    ModelOutputInvalid,
    ModelRateLimited,
    ModelRequestRejected,
    ModelServerError,
    ModelTimeout,
    ModelUnavailable,
)
from relaychain.agents.llm.openai_chat import OpenAIChatModel
from relaychain.agents.llm.pool import ModelFactory, ModelPool, default_factories

__all__ = [
    "FALLBACK_ERRORS",
    "ChatModel",
    "Completion",
    "CompletionRequest",
    "DeltaCallback",
    "EngineNotInstalled",
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
    "default_factories",
]
