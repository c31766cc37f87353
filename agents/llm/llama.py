"""Local chat models from GGUF weights through llama.cpp (`llama-cpp-python`): the embedded default engine.

The quantised file is run as it is — no de-quantising conversion, loaded in
a fraction of a second — at several times the speed of the transformers
engine on the same file. Prompts are the model's own chat template (read
from the GGUF file and rendered as transformers renders it), so token counts
and prices are those of the transformers engine and of the tokenizer agent's
Hugging Face counter. JSON output is constrained by llama.cpp's grammar
built from the JSON Schema.

One worker thread per model owns the weights (one llama.cpp context decodes
one sequence at a time) behind the same bounded queue as the transformers
engine. The rows of a prompt that begins as the previous one did are read
from llama.cpp's cache (reported as cached prompt tokens), so a chain's
steps that share their system prompt and documents read them once.
Generation runs token by token on that thread, so a cancellation, the
deadline or the caller's length limit stops it at the next token.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from relaychain.agents.llm.base import (
    Completion,
    CompletionRequest,
    EngineNotInstalled,
    FinishReason,
    ModelRequestRejected,
    ModelTimeout,
)
from relaychain.agents.llm.c_stderr import held_stderr
from relaychain.agents.llm.decode_threads import DecodeThreads
from relaychain.agents.llm.threaded import (
    CallSide,
    LocalResult,
    ModelThread,
    ProgressCallback,
    call_arguments,
    complete_on_thread,
    physical_cores,
    wait_briefly,
)
from relaychain.agents.weights import WeightsMissing, locate_weights
from relaychain.schemas.config import ModelConfig, Provider

__all__ = ["LLAMA_CPP_PACKAGE", "LlamaChatModel", "Threads", "reusable_rows"]

log = logging.getLogger(__name__)

LLAMA_CPP_PACKAGE = "llama-cpp-python==0.3.36"
"""What a worker needs for `provider: llama-cpp`; pip builds it from source (a few minutes, once)."""


PROMPT_STEP_TOKENS = 64
"""A prompt goes through llama.cpp in batches of this many tokens (its `n_ubatch`); cache reuse stops at a multiple.

A batch's activations stay in a core's L2 cache: on a 512-token prompt, 64 took 4 % more CPU than 128 and 13 %
less than 32, and 128 took 6 % less than llama.cpp's 512 on a 1,249-token one, same logits. 64 rather than 128
because a prompt that shares its start with the previous one reuses that start only down to a whole batch: the
car blog's later steps lose at most 63 shared tokens instead of 127."""


class LlamaChatModel:
    """A `ChatModel` backed by the process-wide llama.cpp engine for `name`."""

    def __init__(
        self,
        name: str,
        config: ModelConfig,
        *,
        max_queue: int = 16,
        threads: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        """`threads`: llama.cpp's threads for this model, else the config's; when neither is set, prompts are
        evaluated on every physical core and tokens decoded on one (see `Threads.default`)."""
        if config.provider is not Provider.LLAMA_CPP:
            raise ValueError(f"model {name!r} has provider {config.provider}, not llama-cpp")
        wait_briefly()
        try:
            import llama_cpp  # noqa: F401  (checked here: the worker says what to install before any request)
        except ImportError:
            raise EngineNotInstalled(name, LLAMA_CPP_PACKAGE) from None
        self.name = name
        self.config = config
        chosen = threads or config.threads
        self._engine = _engine_for(
            name, config, max_queue, Threads(chosen, chosen) if chosen else Threads.default(), on_progress
        )

    def __repr__(self) -> str:
        return f"LlamaChatModel(name={self.name!r})"

    async def load(self) -> None:
        """Load the weights now instead of on the first request."""
        await asyncio.wrap_future(self._engine.thread.submit(self._engine.ensure_loaded))

    async def complete(self, request: CompletionRequest) -> Completion:
        return await complete_on_thread(
            self.name,
            Provider.LLAMA_CPP,
            request,
            lambda side: self._engine.thread.submit(
                self._engine.generate, _Call(**call_arguments(request, self.config.timeout_s), side=side)
            ),
        )

    async def aclose(self) -> None:
        """Nothing to do: the engine and its weights are shared by the whole process."""


_engines: dict[str, _Engine] = {}
_engines_lock = threading.Lock()


@atexit.register
def _free_models() -> None:
    """Free every loaded model while the interpreter is whole: left to `Llama.__del__` at teardown, the free
    finds llama_cpp's module globals already gone and prints a TypeError traceback. The model threads have been
    joined by now (the executor's exit hook runs before atexit's)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.free()


@dataclass(frozen=True)
class Threads:
    """llama.cpp's threads for decoding one token at a time, and for evaluating a prompt in batches.

    `adaptive`: decoding switches between one thread and `decode` by measured speed (`DecodeThreads`)."""

    decode: int
    batch: int
    adaptive: bool = False

    @classmethod
    def default(cls) -> Threads:
        """A prompt's batch is big enough to split over every core (1.4x faster on 2 cores, even on a busy
        machine). One token is not always: decoding threads meet at a barrier after every operation, so every core
        helps only while the others are idle, and the engine measures which holds."""
        cores = physical_cores()
        return cls(decode=cores, batch=cores, adaptive=cores > 1)

    def decoding(self) -> DecodeThreads:
        return DecodeThreads((self.decode, 1) if self.adaptive else (self.decode,))


def _engine_for(
    name: str, config: ModelConfig, max_queue: int, threads: Threads, on_progress: ProgressCallback | None
) -> _Engine:
    """One engine per model name in this process, however many clients ask for it."""
    with _engines_lock:
        engine = _engines.get(name)
        if engine is None or engine.config != config:
            engine = _engines[name] = _Engine(name, config, max_queue=max_queue, threads=threads)
        if on_progress is not None:
            engine.on_progress = on_progress
        return engine


@dataclass(frozen=True, eq=False)
class _Call:
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float | None
    timeout_s: float
    json_schema: dict[str, Any] | None
    side: CallSide


@dataclass
class _Loaded:
    llama: Any
    vocab: Any
    template: Any
    grammars: dict[str, Any] = field(default_factory=dict)


class _Engine:
    """The worker thread that owns one model's weights; every method below runs on it."""

    def __init__(self, name: str, config: ModelConfig, *, max_queue: int, threads: Threads) -> None:
        self.name = name
        self.config = config
        self.threads = threads
        self.on_progress: ProgressCallback | None = None
        self.thread = ModelThread(name, max_queue=max_queue)
        self._loaded: _Loaded | None = None
        self._decoding = threads.decoding()
        self._decoding_now = threads.decode
        self._cached_prompt: list[int] = []
        """The last prompt whose rows are in llama.cpp's cache, evaluated in whole batches."""

    def free(self) -> None:
        if self._loaded is not None:
            self._loaded.llama.close()
            self._loaded = None
            self._decoding_now = self.threads.decode

    def ensure_loaded(self) -> _Loaded:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def generate(self, call: _Call) -> LocalResult:
        import llama_cpp

        loaded = self.ensure_loaded()
        llama = loaded.llama
        prompt = loaded.template(messages=call.messages).prompt
        # The template writes any BOS itself, as transformers' apply_chat_template does.
        prompt_ids = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(prompt_ids) + call.max_tokens > self.config.context_window:
            raise ModelRequestRejected(
                self.name,
                f"{len(prompt_ids)} prompt tokens + {call.max_tokens} output tokens exceed the {self.config.context_window}-token window",
            )
        sampling = call.temperature is not None and call.temperature > 0
        grammar = None if call.json_schema is None else self._grammar(loaded, call.json_schema)
        # Free text only: under a grammar the penalty would fight the JSON punctuation it must repeat.
        penalty = self.config.repetition_penalty if call.json_schema is None and self.config.repetition_penalty else 1.0
        deadline = time.monotonic() + call.timeout_s
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        generated: list[int] = []
        pieces: list[str] = []
        finish: FinishReason = "length"
        # The rows of the previous prompt that this one starts with are read from the cache (a chain's steps share
        # their system prompt, brief and documents); `generate` evaluates only the rest.
        cached = llama.n_tokens = reusable_rows(self._cached_prompt, prompt_ids, llama.input_ids[: llama.n_tokens])
        self._cached_prompt = []
        tokens = llama.generate(
            prompt_ids,
            temp=call.temperature if sampling else 0.0,
            top_k=0,
            top_p=1.0,
            min_p=0.0,
            repeat_penalty=penalty,
            grammar=grammar,
        )
        delivered = 0.0
        for token in tokens:
            arrived = time.perf_counter()
            if generated:
                self._decoding.observed(arrived - delivered)
            generated.append(token)
            if llama_cpp.llama_vocab_is_eog(loaded.vocab, token):
                finish = "stop"
                break
            # Token by token through an incremental decoder: a character split over two tokens comes out whole.
            piece = decoder.decode(llama.detokenize([token]))
            if piece:
                pieces.append(piece)
                if call.side.emit is not None:
                    call.side.emit(piece)
            if len(generated) >= call.max_tokens:
                break
            if call.side.stop.is_set():
                finish = "cancelled"
                break
            if time.monotonic() >= deadline:
                raise ModelTimeout(self.name, call.timeout_s)
            if self._decoding.now != self._decoding_now:
                self._decoding_now = self._decoding.now
                llama_cpp.llama_set_n_threads(llama.ctx, self._decoding_now, self.threads.batch)
            delivered = time.perf_counter()
        tokens.close()
        self._cached_prompt = prompt_ids
        pieces.append(decoder.decode(b"", final=True))
        return LocalResult("".join(pieces), len(prompt_ids), len(generated), finish, cached)

    def _grammar(self, loaded: _Loaded, schema: dict[str, Any]) -> Any:
        """llama.cpp's grammar for the schema, built and checked once per schema (a refusal is kept too)."""
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in loaded.grammars:
            grammar: LlamaGrammar | str
            try:
                grammar = LlamaGrammar.from_json_schema(key, verbose=False)
            except (ValueError, RuntimeError) as exc:
                grammar = f"the JSON Schema has no llama.cpp grammar: {exc}"
            else:
                # The GBNF text is only parsed when a sampler is made, and generating with a grammar llama.cpp
                # refused (say, a long maxLength unrolled past its repetition limit) crashes the process.
                # A refusal prints the whole grammar to stderr: its reason goes into the answer instead.
                with held_stderr() as printed:
                    sampler = llama_cpp.llama_sampler_init_grammar(
                        loaded.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
                    )
                reason, others = _refusal(printed.text, grammar._grammar)
                printed.release(others)
                if not sampler:
                    grammar = (
                        f"llama.cpp refused the grammar of the JSON Schema ({reason or 'no reason given'}; "
                        "lower its maxLength/maxItems)"
                    )
                else:
                    llama_cpp.llama_sampler_free(sampler)
            loaded.grammars[key] = grammar
        grammar = loaded.grammars[key]
        if isinstance(grammar, str):
            raise ModelRequestRejected(self.name, grammar)
        return grammar

    def _load(self) -> _Loaded:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        started = time.perf_counter()
        weights = locate_weights(self.name, self.config)
        if weights.gguf_path is None:
            raise WeightsMissing(self.name, "the llama-cpp engine reads GGUF weights: set `gguf_file`")
        self._progress(f"loading {self.name} from {weights.gguf_path}")
        llama = llama_cpp.Llama(
            model_path=str(weights.gguf_path),
            n_ctx=self.config.context_window,
            n_threads=self.threads.decode,
            n_threads_batch=self.threads.batch,
            n_ubatch=PROMPT_STEP_TOKENS,
            # The repetition penalty looks back over the whole sequence, as transformers' does.
            last_n_tokens_size=self.config.context_window,
            verbose=False,
        )
        template_text = llama.metadata.get("tokenizer.chat_template")
        if not template_text:
            raise WeightsMissing(self.name, f"{weights.gguf_path.name} has no chat template")
        template = Jinja2ChatFormatter(
            template=template_text,
            eos_token=_token_text(llama, llama.token_eos()),
            bos_token=_token_text(llama, llama.token_bos()),
        )
        self._progress(f"{self.name} ready in {time.perf_counter() - started:.1f} s")
        return _Loaded(llama=llama, vocab=llama_cpp.llama_model_get_vocab(llama.model), template=template)

    def _progress(self, message: str) -> None:
        log.info("%s", message)
        if self.on_progress is not None:
            self.on_progress(message)


def reusable_rows(cached: list[int], prompt: list[int], held: Sequence[int]) -> int:
    """How many of `prompt`'s first rows can be read from a cache holding `cached`'s prompt rows.

    `held` is what the llama.cpp context says its cache holds: code that drives the same context directly (a
    bench's raw baseline) leaves the rows this engine evaluated neither whole nor in place.

    Greedy decoding must give the same answer to the same prompt, cached or not. A row evaluated with a prompt's
    batch is the same as a fresh evaluation's only when it was computed in the same batch of the same tokens, so
    the reuse stops at a whole prompt step: fresh or resumed, the batches then start at the same rows. Rows of
    generated tokens are never reused (one token at a time gives logits up to 0.76 apart), and the prompt's last
    row is always evaluated, since its logits pick the first token.
    """
    common = 0
    for old, new, now in zip(cached, prompt[:-1], held, strict=False):
        if not old == new == now:
            break
        common += 1
    return common - common % PROMPT_STEP_TOKENS


def _token_text(llama: Any, token: int) -> str:
    return "" if token < 0 else llama.detokenize([token], special=True).decode("utf-8", errors="replace")


_REFUSAL = "error parsing grammar: "


def _refusal(printed: str, grammar: str) -> tuple[str | None, str]:
    """llama.cpp's reason for refusing `grammar`, and what else was printed meanwhile.

    Its parser prints `<function>: error parsing grammar: <reason>`, a blank line and the grammar whole."""
    at = printed.find(_REFUSAL)
    if at < 0:
        return None, printed
    line_start = printed.rfind("\n", 0, at) + 1
    reason_end = printed.find("\n", at)
    reason_end = len(printed) if reason_end < 0 else reason_end
    reason = printed[at + len(_REFUSAL) : reason_end].strip()
    dump_at = printed.find(grammar, reason_end)
    # The dump is cut only where it is whole; another thread's output inside it stays, and the dump with it.
    end = dump_at + len(grammar) if dump_at >= 0 and not printed[reason_end:dump_at].strip() else reason_end
    end = end + 1 if printed[end : end + 1] == "\n" else end
    return reason, printed[:line_start] + printed[end:]
