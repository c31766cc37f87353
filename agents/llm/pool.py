"""The models of one process, built from the config on first use (or at start-up by `load`), and the fallback walk.

A model marked `available: false` is skipped for its `fallback`; a model
that fails in a way another model could survive (timeouts, 5xx, rate limits,
missing key, weights or engine, a full local queue — `FALLBACK_ERRORS`)
hands the call to its fallback, and so on down the chain. A request-specific
refusal (`model_request_rejected`) is not tried elsewhere: it would fail the
same. The last model's error is what the caller gets; when it is retryable
the runtime retries the step, which walks the chain again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from opentelemetry import trace

from relaychain.agents.llm.base import (
    FALLBACK_ERRORS,
    ChatModel,
    Completion,
    CompletionRequest,
    ModelUnavailable,
)
from relaychain.agents.llm.ratelimit import ModelLimiter
from relaychain.agents.llm.telemetry import ModelCallTelemetry
from relaychain.bus.errors import AgentError
from relaychain.schemas.config import AppConfig, ModelConfig, Provider
from relaychain.schemas.errors import ErrorCode

__all__ = ["ModelFactory", "ModelPool", "default_factories"]

log = logging.getLogger(__name__)

ModelFactory = Callable[[str, ModelConfig], ChatModel]


def default_factories(
    data_dir: Path, env: Mapping[str, str] | None = None, on_progress: Callable[[str], None] | None = None
) -> dict[Provider, ModelFactory]:
    """OpenAI SDK clients for remote models, llama.cpp for GGUF weights, transformers for Hugging Face ones.

    Keys are read from `env`, the process's by default. `on_progress` receives
    a local model's load messages.
    """
    environ = os.environ if env is None else env

    def remote(name: str, config: ModelConfig) -> ChatModel:
        from relaychain.agents.llm.openai_chat import OpenAIChatModel

        return OpenAIChatModel(name, config, environ.get(config.api_key_env))

    def local(name: str, config: ModelConfig) -> ChatModel:
        # Imported here: torch and transformers cost seconds and memory that remote-only workers never need.
        from relaychain.agents.llm.local import TransformersChatModel

        return TransformersChatModel(name, config, data_dir, on_progress=on_progress)

    def llama(name: str, config: ModelConfig) -> ChatModel:
        # Imported here: the llama.cpp binding is optional and remote-only workers never need it.
        from relaychain.agents.llm.llama import LlamaChatModel

        return LlamaChatModel(name, config, on_progress=on_progress)

    return {
        Provider.OPENAI: remote,
        Provider.OPENAI_COMPATIBLE: remote,
        Provider.TRANSFORMERS: local,
        Provider.LLAMA_CPP: llama,
    }


class ModelPool:
    def __init__(
        self,
        config: AppConfig,
        data_dir: Path,
        *,
        factories: Mapping[Provider, ModelFactory] | None = None,
        env: Mapping[str, str] | None = None,
        on_progress: Callable[[str], None] | None = None,
        limiter: ModelLimiter | None = None,
        telemetry: ModelCallTelemetry | None = None,
    ) -> None:
        """`limiter` keeps each model under its configured `limits` (shared across replicas when it is PostgreSQL's);
        `telemetry` makes each call a GenAI CLIENT span with the GenAI client metrics."""
        self.config = config
        self._factories = {**default_factories(data_dir, env, on_progress), **(factories or {})}
        self._models: dict[str, ChatModel] = {}
        self._limiter = limiter
        self._telemetry = telemetry or ModelCallTelemetry()

    def get(self, name: str) -> ChatModel:
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = self._factories[self.model_config(name).provider](
                name, self.model_config(name)
            )
        return model

    async def load(self, name: str) -> None:
        """Build model `name`'s client and bring its weights into memory, so a worker warms up before its first request."""
        await self.get(name).load()

    def model_config(self, name: str) -> ModelConfig:
        config = self.config.models.get(name)
        if config is None:
            raise AgentError(
                ErrorCode.UNKNOWN_MODEL, f"unknown model {name!r}", details={"known": sorted(self.config.models)}
            )
        return config

    def chain(self, name: str) -> list[str]:
        """`name` and its fallbacks in order, each once, unavailable ones left out."""
        self.model_config(name)  # an unknown name is a typed error, not a KeyError
        return [m for m in self.config.fallback_chain(name) if self.config.models[m].available]

    async def complete_with_fallback(self, name: str, request: CompletionRequest) -> Completion:
        """The first model down `name`'s fallback chain that answers; `max_tokens` is capped per model."""
        candidates = self.chain(name)
        if not candidates:
            raise ModelUnavailable(name, "it and every fallback are marked unavailable")
        span = trace.get_current_span()
        for position, candidate in enumerate(candidates):
            config = self.model_config(candidate)
            call = dataclasses.replace(request, max_tokens=min(request.max_tokens, config.max_output_tokens))
            try:
                if self._limiter is not None:
                    await self._limiter.admit(candidate, config.limits, tokens=expected_tokens(call))
                async with self._telemetry.call(candidate, config, call) as observed:
                    return observed.done(await self.get(candidate).complete(call))
            except FALLBACK_ERRORS as exc:
                # Text already streamed to the caller cannot be taken back, so another model would garble it.
                if position == len(candidates) - 1 or exc.details.get("streamed"):
                    raise
                following = candidates[position + 1]
                log.warning("model %s failed (%s); falling back to %s", candidate, exc.code, following)
                span.add_event(
                    "relaychain.model.fallback", {"from": candidate, "to": following, "error.type": exc.code}
                )
        raise AssertionError("unreachable: the loop returns or raises")

    async def aclose(self) -> None:
        models, self._models = list(self._models.values()), {}
        await asyncio.gather(*(model.aclose() for model in models))


def expected_tokens(request: CompletionRequest) -> int:
    """What a call reserves against a tokens-per-minute limit before the provider counts it: the prompt, at
    the ~4 characters per token of English BPE vocabularies (rounded up), plus every token it may generate."""
    characters = sum(len(m.content) for m in request.messages)
    return -(-characters // 4) + request.max_tokens
