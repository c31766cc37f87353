"""Token counters an agent loads off the event loop: each once; at warm-up, those of the models requests go to unasked.

Building a counter holds the GIL: tiktoken's o200k_base and cl100k_base
took 0.5 s of CPU together, a Hugging Face tokenizer 0.1-0.2 s. An agent's
warm-up loads the counters of the models a request reaches without a model
hint (each business's default and its fallbacks), as the generator's
warm-up loads only those models; a model only a hint picks (the shipped
config's OpenAI and ERNIE models) has its counter built by the first step
that needs it, instead of by every start-up before its first request. A
step that needs a counter while it is loading waits for that load; a load
that failed is tried again by the next step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from relaychain.agents.tokens.encodings import EncodingUnavailable
from relaychain.bus.errors import AgentError
from relaychain.schemas.config import AppConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["CounterLoads"]

log = logging.getLogger(__name__)

C = TypeVar("C")


class CounterLoads(Generic[C]):
    """Counters by model name, built by `build` on a thread."""

    def __init__(self, build: Callable[[str], C]) -> None:
        self._build = build
        self._built: dict[str, C] = {}
        self._loading: dict[str, asyncio.Future[C]] = {}

    async def get(self, model: str) -> C:
        """`model`'s counter; AgentError `tokenizer_unavailable` when it cannot be built."""
        counter = self._built.get(model)
        if counter is not None:
            return counter
        loading = self._loading.get(model)
        if loading is None:
            loading = self._loading[model] = asyncio.ensure_future(self._load(model))
        # Shielded: a cancelled step leaves the load to whoever else waits for it.
        return await asyncio.shield(loading)

    async def warm_up(self, config: AppConfig, models: Iterable[str], affected: str) -> None:
        """Load the counters of those of `models` that requests go to unasked (and are available). `affected`
        names, in the warning for a counter that cannot be built, what will be answered with the error."""
        unasked = config.unasked_models()
        for model in sorted({name for name in models if name in unasked and config.models[name].available}):
            try:
                await self.get(model)
            except AgentError as exc:
                log.warning("%s; %s for %s will be answered %s", exc.message, affected, model, exc.code)

    async def _load(self, model: str) -> C:
        try:
            counter = await asyncio.to_thread(self._build, model)
        except (EncodingUnavailable, ValueError, OSError) as exc:
            raise AgentError(ErrorCode.TOKENIZER_UNAVAILABLE, f"no tokenizer for model {model!r}: {exc}") from exc
        finally:
            del self._loading[model]
        self._built[model] = counter
        return counter
