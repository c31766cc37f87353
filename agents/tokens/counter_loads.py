"""Token counters an agent loads off the event loop: each once, those of the models requests go to unasked first.

Building a counter holds the GIL: tiktoken's o200k_base and cl100k_base
took 0.5 s of CPU together, a Hugging Face tokenizer 0.1-0.2 s. An agent's
warm-up loads the counters of the models a request reaches without a model
hint (each business's default and its fallbacks) before the agent takes
jobs; those only a hint picks (the shipped config's OpenAI and ERNIE
models) load in the background once the process has started (`later`:
set by the composition root when every agent has joined; loading them
while the others load would only share the GIL with those), instead of
delaying every start-up's first request. A step that needs a counter
before it is loaded builds it, or waits for the load in flight; a load
that failed is tried again by the next step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from relaychain.agents.tokens.encodings import EncodingUnavailable
from relaychain.bus.errors import AgentError
from relaychain.schemas.config import AppConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["CounterLoads"]

log = logging.getLogger(__name__)

C = TypeVar("C")


class CounterLoads(Generic[C]):
    """Counters by model name, built by `build` on a thread; background loads start once `later()` returns."""

    def __init__(self, build: Callable[[str], C], *, later: Callable[[], Awaitable[object]] | None = None) -> None:
        self._build = build
        self._later = later
        self._built: dict[str, C] = {}
        self._loading: dict[str, asyncio.Future[C]] = {}
        self._background: set[asyncio.Task[None]] = set()
        """The running background warm-ups (the loop keeps only weak references to tasks)."""

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
        """Load the counters of `models` (those configured and available): the ones requests go to unasked now,
        the rest in the background. `affected` names, in the warning for a counter that cannot be built, what
        will be answered with the error ("budget steps")."""
        wanted = {name for name in models if name in config.models and config.models[name].available}
        unasked = config.unasked_models()
        for name in sorted(wanted & unasked):
            await self._warm(name, affected)
        hinted = sorted(wanted - unasked)
        if hinted:
            task = asyncio.create_task(self._warm_all(hinted, affected), name="token-counters-warm-up")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _load(self, model: str) -> C:
        try:
            counter = await asyncio.to_thread(self._build, model)
        except (EncodingUnavailable, ValueError, OSError) as exc:
            raise AgentError(ErrorCode.TOKENIZER_UNAVAILABLE, f"no tokenizer for model {model!r}: {exc}") from exc
        finally:
            del self._loading[model]
        self._built[model] = counter
        return counter

    async def _warm(self, model: str, affected: str) -> None:
        try:
            await self.get(model)
        except AgentError as exc:
            log.warning("%s; %s for %s will be answered %s", exc.message, affected, model, exc.code)

    async def _warm_all(self, models: list[str], affected: str) -> None:
        if self._later is not None:
            await self._later()
        for model in models:
            try:
                await self._warm(model, affected)
            except Exception:
                # Nobody awaits this task: a bug here is logged, and a step that needs the counter tries again.
                log.exception("loading the token counter of %s failed", model)
