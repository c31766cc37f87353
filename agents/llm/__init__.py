"""Model clients: OpenAI and OpenAI-compatible servers, local llama.cpp and transformers models, and the fallback pool.

`relaychain.agents.llm.llama` (llama-cpp-python) and `relaychain.agents.llm.local`
(torch, transformers) are imported only when such a model is built, and
`OpenAIChatModel` (the openai SDK, 0.4 s of import) when it is first named.
"""

from typing import TYPE_CHECKING, Any

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
from relaychain.agents.llm.pool import ModelFactory, ModelPool, default_factories

if TYPE_CHECKING:
    from relaychain.agents.llm.openai_chat import OpenAIChatModel

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


def __getattr__(name: str) -> Any:
    if name == "OpenAIChatModel":
        from relaychain.agents.llm.openai_chat import OpenAIChatModel

        return OpenAIChatModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
