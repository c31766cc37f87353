"""Local chat models through `transformers`, one loaded copy per process, concurrent jobs decoded as one batch.

For Hugging Face-format weights (chatglm with its own code, fine-tunes);
GGUF files are served faster by the llama.cpp engine (`llama.py`). Weights
come from `relaychain.agents.weights`. A GGUF file given to this engine is
de-quantised by transformers on first load, which is slow, so the result is
saved once as safetensors under `<data_dir>/models/<name>/`.

Each model has one worker thread that owns the weights (loading included, so
no two requests ever load twice) and a bounded count of waiting requests;
past it callers get `ModelBusy`. Whatever is queued when the model becomes
free — up to `max_batch` jobs with the same sampling settings — is decoded
together: left-padded, each sequence with its own length limit, deadline,
cancellation, grammar and streamed text, and stopping on its own end token.
Greedy outputs are token for token those of decoding each job alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaychain.agents.hf_imports import TRANSFORMERS_LOCK
from relaychain.agents.llm.base import (
    Completion,
    CompletionRequest,
    ModelBusy,
    ModelRequestRejected,
    ModelTimeout,
)
from relaychain.agents.llm.threaded import (
    CallSide,
    LocalResult,
    ModelThread,
    ProgressCallback,
    call_arguments,
    complete_on_thread,
    physical_cores,
)
from relaychain.agents.weights import locate_weights
from relaychain.schemas.config import ModelConfig, Provider

__all__ = ["LocalModelRegistry", "ProgressCallback", "TransformersChatModel", "default_registry"]

log = logging.getLogger(__name__)

_SOURCE_FILE = "relaychain-source.json"


class TransformersChatModel:
    """A `ChatModel` backed by the process-wide engine for `name`."""

    def __init__(
        self,
        name: str,
        config: ModelConfig,
        data_dir: Path,
        *,
        max_queue: int = 16,
        threads: int | None = None,
        on_progress: ProgressCallback | None = None,
        registry: LocalModelRegistry | None = None,
    ) -> None:
        """`threads`: torch's intra-op threads (process-wide), one per physical core by default; fewer wins on cores shared with other work."""
        if config.provider is not Provider.TRANSFORMERS:
            raise ValueError(f"model {name!r} has provider {config.provider}, not transformers")
        self.name = name
        self.config = config
        self._engine = (registry or default_registry).engine(
            name,
            config,
            data_dir,
            max_queue=max_queue,
            threads=threads or config.threads or physical_cores(),
            on_progress=on_progress,
        )

    def __repr__(self) -> str:
        return f"TransformersChatModel(name={self.name!r})"

    @property
    def cache_dir(self) -> Path:
        return self._engine.cache_dir

    async def load(self) -> None:
        """Load the weights now (first run converts and caches them) instead of on the first request."""
        await asyncio.wrap_future(self._engine.thread.submit(self._engine.ensure_loaded))

    async def complete(self, request: CompletionRequest) -> Completion:
        return await complete_on_thread(
            self.name,
            Provider.TRANSFORMERS,
            request,
            lambda side: self._engine.submit(_Call(**call_arguments(request, self.config.timeout_s), side=side)),
        )

    async def aclose(self) -> None:
        """Nothing to do: the engine and its weights are shared by the whole process."""


class LocalModelRegistry:
    """One engine per model name in this process, however many clients ask for it."""

    def __init__(self) -> None:
        self._engines: dict[str, _Engine] = {}
        self._lock = threading.Lock()

    def engine(
        self,
        name: str,
        config: ModelConfig,
        data_dir: Path,
        *,
        max_queue: int,
        threads: int,
        on_progress: ProgressCallback | None,
    ) -> _Engine:
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self._engines[name] = _Engine(
                    name, config, data_dir, max_queue=max_queue, threads=threads, on_progress=on_progress
                )
            elif on_progress is not None:
                engine.on_progress = on_progress
            return engine


default_registry = LocalModelRegistry()


@dataclass(frozen=True, eq=False)
class _Call:
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float | None
    timeout_s: float
    json_schema: dict[str, Any] | None
    side: CallSide
    future: Future[LocalResult] = field(default_factory=Future)

    @property
    def batch_key(self) -> tuple[float | None, bool]:
        """Jobs decode together only under the same sampling settings (the repetition penalty is free text only)."""
        sampling = self.temperature if self.temperature is not None and self.temperature > 0 else None
        return sampling, self.json_schema is None


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    grammars: dict[str, Any] = field(default_factory=dict)
    grammar_compiler: Any = None


class _Engine:
    """One model's weights and queue; every method below `submit` runs on its worker thread."""

    def __init__(
        self,
        name: str,
        config: ModelConfig,
        data_dir: Path,
        *,
        max_queue: int,
        threads: int,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.name = name
        self.config = config
        self.cache_dir = data_dir / "models" / name
        self.on_progress = on_progress
        self.thread = ModelThread(name, max_queue=max_queue, initializer=_set_threads, initargs=(threads,))
        self._pending: list[_Call] = []
        self._pending_lock = threading.Lock()
        self._loaded: _Loaded | None = None

    def submit(self, call: _Call) -> Future[LocalResult]:
        """Queue `call`; one worker turn is queued with it, and whichever turn runs first takes a batch of the queue.

        Runs on the event loop's thread (the turn starts after the loop's due callbacks: see `submit_soon`).
        """
        with self._pending_lock:
            self._pending.append(call)
        try:
            self.thread.submit_soon(self._run_batch)
        except ModelBusy:
            with self._pending_lock:
                self._pending.remove(call)
            raise
        return call.future

    def ensure_loaded(self) -> _Loaded:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def _take_batch(self) -> list[_Call]:
        with self._pending_lock:
            if not self._pending:
                return []
            key = self._pending[0].batch_key
            batch = [c for c in self._pending if c.batch_key == key][: self.config.max_batch]
            self._pending = [c for c in self._pending if c not in batch]
        return [c for c in batch if c.future.set_running_or_notify_cancel()]

    def _run_batch(self) -> None:
        from relaychain.agents.llm.batch import Row, decode_batch

        batch = self._take_batch()
        if not batch:
            return
        try:
            loaded = self.ensure_loaded()
            rows: list[tuple[_Call, Row]] = []
            for call in batch:
                try:
                    rows.append((call, self._row(loaded, call)))
                except Exception as exc:  # a bad call fails alone; the batch goes on without it
                    call.future.set_exception(exc)
            if rows:
                outcomes = decode_batch(
                    loaded.model,
                    loaded.tokenizer,
                    [row for _, row in rows],
                    temperature=batch[0].batch_key[0],
                    repetition_penalty=self.config.repetition_penalty if batch[0].batch_key[1] else None,
                )
                for (call, _), outcome in zip(rows, outcomes, strict=True):
                    if outcome.timed_out:
                        call.future.set_exception(ModelTimeout(self.name, call.timeout_s))
                    else:
                        call.future.set_result(
                            LocalResult(
                                outcome.text, outcome.input_tokens, outcome.output_tokens, outcome.finish_reason
                            )
                        )
        except BaseException as exc:
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    def _row(self, loaded: _Loaded, call: _Call) -> Any:
        from relaychain.agents.llm.batch import Row

        tokenizer = loaded.tokenizer
        prompt = tokenizer.apply_chat_template(call.messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) + call.max_tokens > self.config.context_window:
            raise ModelRequestRejected(
                self.name,
                f"{len(ids)} prompt tokens + {call.max_tokens} output tokens exceed the {self.config.context_window}-token window",
            )
        grammar = None if call.json_schema is None else self._grammar(loaded, call.json_schema)
        return Row(
            prompt_ids=list(ids),
            max_tokens=call.max_tokens,
            deadline=time.monotonic() + call.timeout_s,
            stop=call.side.stop,
            emit=call.side.emit,
            grammar=grammar,
        )

    def _grammar(self, loaded: _Loaded, schema: dict[str, Any]) -> Any:
        """The schema's grammar, compiled once per schema (matchers, which keep per-generation state, are per row)."""
        try:
            import xgrammar
        except ImportError:
            raise ModelRequestRejected(self.name, "constrained decoding needs the xgrammar package") from None
        if loaded.grammar_compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(loaded.tokenizer, vocab_size=loaded.model.config.vocab_size)
            loaded.grammar_compiler = xgrammar.GrammarCompiler(info)
        key = json.dumps(schema, sort_keys=True)
        grammar = loaded.grammars.get(key)
        if grammar is None:
            grammar = loaded.grammars[key] = loaded.grammar_compiler.compile_json_schema(key, any_whitespace=False)
        return grammar

    def _load(self) -> _Loaded:
        with TRANSFORMERS_LOCK:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            started = time.perf_counter()
            weights = locate_weights(self.name, self.config)
            source, gguf = weights.directory, weights.gguf_file
            if gguf is None:
                self._progress(f"loading {self.name} from {source}")
                # chatglm and other custom architectures ship their model code with the weights: run it only when
                # the config says so for this model.
                remote_code = {"trust_remote_code": self.config.trust_remote_code}
                model = AutoModelForCausalLM.from_pretrained(source, **remote_code)
                tokenizer = AutoTokenizer.from_pretrained(source, **remote_code)
            elif _cache_matches(self.cache_dir, source / gguf):
                self._progress(f"loading {self.name} from the cache {self.cache_dir}")
                model, tokenizer = (
                    AutoModelForCausalLM.from_pretrained(self.cache_dir),
                    AutoTokenizer.from_pretrained(self.cache_dir),
                )
            else:
                self._progress(f"converting {self.name} from {gguf} (first run only, about a minute)")
                tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf)
                model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf)
                self._progress(f"saving {self.name} as safetensors to {self.cache_dir}")
                _save_cache(model, tokenizer, self.cache_dir, source / gguf)
            model.eval()
            self._progress(f"{self.name} ready in {time.perf_counter() - started:.1f} s")
        return _Loaded(model=model, tokenizer=tokenizer)

    def _progress(self, message: str) -> None:
        log.info("%s", message)
        if self.on_progress is not None:
            self.on_progress(message)


def _cache_matches(cache_dir: Path, gguf: Path) -> bool:
    try:
        recorded = json.loads((cache_dir / _SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded == _source_identity(gguf) and (cache_dir / "model.safetensors").is_file()


def _save_cache(model: Any, tokenizer: Any, cache_dir: Path, gguf: Path) -> None:
    """Save de-quantised weights; written beside the target and renamed, so a crash never leaves half a cache."""
    # The weights are plain tensors now; a leftover GGUF quantizer would make save_pretrained refuse or mislabel them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = cache_dir.with_name(f"{cache_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _SOURCE_FILE).write_text(json.dumps(_source_identity(gguf)), encoding="utf-8")
    shutil.rmtree(cache_dir, ignore_errors=True)
    os.replace(staging, cache_dir)


def _source_identity(gguf: Path) -> dict[str, Any]:
    return {"file": gguf.name, "size": gguf.stat().st_size}


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
