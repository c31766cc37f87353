"""OpenAI and OpenAI-compatible chat models through the async `openai` SDK.

One attempt per call (the SDK's own retries are off): a transient failure —
429, 5xx, a dropped connection, a timeout — escapes as a `RetryableError`
carrying the server's `Retry-After`, and the runtime's backoff retries the
step. Retrying here too multiplied attempts (client retries inside each
runtime attempt). A stream that already handed text to the caller is never
retried: the caller would see the text twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import openai

from relaychain.agents.llm.base import (
    Completion,
    CompletionRequest,
    FinishReason,
    ModelOutputInvalid,
    ModelRateLimited,
    ModelRequestRejected,
    ModelServerError,
    ModelTimeout,
    ModelUnavailable,
)
from relaychain.agents.tokens.counter import counter_for
from relaychain.bus.errors import AgentError
from relaychain.schemas.config import ModelConfig, Provider

__all__ = ["OpenAIChatModel"]

log = logging.getLogger(__name__)

_Tokens = tuple[int, int, int, int]
"""Prompt, completion, cached prompt and reasoning tokens of one call."""

_FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "content_filter", "tool_calls"})


class OpenAIChatModel:
    """A model served over the OpenAI chat completions API. The API key never appears in repr or logs."""

    def __init__(self, name: str, config: ModelConfig, api_key: str | None) -> None:
        if config.provider not in (Provider.OPENAI, Provider.OPENAI_COMPATIBLE):
            raise ValueError(f"model {name!r} has provider {config.provider}, not an OpenAI API")
        self.name = name
        self.config = config
        self.provider = config.provider.value
        self._model_id = config.model_id or name
        self._client: openai.AsyncOpenAI | None = None
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"OpenAIChatModel(name={self.name!r}, model_id={self._model_id!r}, base_url={self.config.base_url!r})"

    async def load(self) -> None:
        """Nothing to load for a remote model; the key is checked so a missing one shows at start-up."""
        self._ensure_client()

    async def complete(self, request: CompletionRequest) -> Completion:
        client = self._ensure_client()
        timeout = request.timeout_s or self.config.timeout_s
        body = self._body(request)
        started = time.perf_counter()
        if request.on_delta is None and request.cancelled is None:
            text, model, usage, finish = await self._once(client, body, timeout)
        else:
            text, model, usage, finish = await self._stream(client, body, timeout, request)
        return Completion(
            text=text,
            model=self.name,
            response_model=model or self._model_id,
            provider=self.provider,
            input_tokens=usage[0],
            output_tokens=usage[1],
            cached_input_tokens=usage[2],
            reasoning_tokens=usage[3],
            finish_reason=finish,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _ensure_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            if not self._api_key:
                raise ModelUnavailable(self.name, f"no API key: set the environment variable {self.config.api_key_env}")
            # max_retries=0: the runtime owns retries (see the module docstring).
            self._client = openai.AsyncOpenAI(api_key=self._api_key, base_url=self.config.base_url, max_retries=0)
        return self._client

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model_id,
            "messages": [m.model_dump(exclude_none=True) for m in request.messages],
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        schema = request.json_schema
        # Structured outputs are an OpenAI feature; compatible servers vary, so they get plain text and the formatter.
        if schema is not None and self.config.provider is Provider.OPENAI:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": _schema_name(schema), "schema": schema, "strict": False},
            }
        return body

    async def _once(
        self, client: openai.AsyncOpenAI, body: dict[str, Any], timeout: float
    ) -> tuple[str, str, _Tokens, FinishReason]:
        try:
            response = await client.chat.completions.create(**body, timeout=timeout)
        except openai.OpenAIError as exc:
            raise self._classify(exc, timeout) from exc
        if not response.choices:
            raise ModelOutputInvalid(self.name, "no choices in the response")
        choice = response.choices[0]
        return choice.message.content or "", response.model, self._usage(response.usage), _finish(choice.finish_reason)

    async def _stream(
        self, client: openai.AsyncOpenAI, body: dict[str, Any], timeout: float, request: CompletionRequest
    ) -> tuple[str, str, _Tokens, FinishReason]:
        state = _StreamState()
        reading = asyncio.ensure_future(self._read_stream(client, body, timeout, request, state))
        waiters: set[asyncio.Future[Any]] = {reading}
        if request.cancelled is not None:
            waiters.add(asyncio.ensure_future(request.cancelled.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            reading.cancel()
            raise
        finally:
            for waiter in waiters - {reading}:
                waiter.cancel()
        if not reading.done():
            # Cancelled by the caller: closing the HTTP stream stops the provider generating (and billing) more.
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            if state.stream is not None:
                await state.stream.close()
            return "".join(state.emitted), state.model, self._cancelled_usage(request, state), "cancelled"
        await reading
        return "".join(state.emitted), state.model, self._usage(state.usage), _finish(state.finish)

    async def _read_stream(
        self,
        client: openai.AsyncOpenAI,
        body: dict[str, Any],
        timeout: float,
        request: CompletionRequest,
        state: _StreamState,
    ) -> None:
        try:
            # The timeout covers the whole stream, not only its first byte.
            async with asyncio.timeout(timeout):
                state.stream = await client.chat.completions.create(
                    **body, stream=True, stream_options={"include_usage": True}, timeout=timeout
                )
                async for chunk in state.stream:
                    state.model = chunk.model or state.model
                    if chunk.usage is not None:
                        state.usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.delta.content:
                            state.emitted.append(choice.delta.content)
                            if request.on_delta is not None:
                                await request.on_delta(choice.delta.content)
                        if choice.finish_reason:
                            state.finish = choice.finish_reason
        except TimeoutError:
            raise self._after_output(ModelTimeout(self.name, timeout), state) from None
        except openai.OpenAIError as exc:
            raise self._after_output(self._classify(exc, timeout), state) from exc

    def _after_output(self, error: AgentError, state: _StreamState) -> AgentError:
        """Once text reached the caller a retry would repeat it: the failure is final (and says why)."""
        if not state.emitted or not error.retryable:
            return error
        return ModelServerError(self.name, f"stream broke after output was sent: {error.message}", streamed=True)

    def _cancelled_usage(self, request: CompletionRequest, state: _StreamState) -> _Tokens:
        """What a cancelled stream is billed: the provider sends usage only at the end, so count it the way it bills."""
        if state.usage is not None:
            return self._usage(state.usage)
        counter = counter_for(self.config, self.name)
        return counter.count_messages(request.messages), counter.count("".join(state.emitted)), 0, 0

    def _usage(self, usage: Any) -> _Tokens:
        """(prompt, completion, cached prompt, reasoning) tokens as the provider bills them."""
        if usage is None:
            raise ModelOutputInvalid(self.name, "the server reported no token usage")
        prompt_details, completion_details = usage.prompt_tokens_details, usage.completion_tokens_details
        return (
            usage.prompt_tokens,
            usage.completion_tokens,
            (prompt_details.cached_tokens or 0) if prompt_details is not None else 0,
            (completion_details.reasoning_tokens or 0) if completion_details is not None else 0,
        )

    def _classify(self, exc: openai.OpenAIError, timeout: float) -> AgentError:
        """The typed error for a failed call; the retryable ones carry the server's `Retry-After`."""
        if isinstance(exc, openai.APITimeoutError):
            return ModelTimeout(self.name, timeout)
        if isinstance(exc, openai.APIConnectionError):
            return ModelServerError(self.name, f"connection failed: {exc}")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = _status_message(exc)
            if status == 429:
                return ModelRateLimited(self.name, message, retry_after_s=_retry_after(exc))
            if status >= 500 or status in (408, 409):
                return ModelServerError(self.name, message, status=status, retry_after_s=_retry_after(exc))
            if status in (401, 403, 404):
                return ModelUnavailable(self.name, f"HTTP {status}: {message}")
            return ModelRequestRejected(self.name, message, status=status)
        return ModelOutputInvalid(self.name, str(exc))


class _StreamState:
    """What a stream has delivered so far; read by `_stream` whether the stream ended or was cancelled."""

    def __init__(self) -> None:
        self.stream: Any = None
        self.model = ""
        self.finish = "unknown"
        self.usage: Any = None
        self.emitted: list[str] = []


def _finish(reason: str | None) -> FinishReason:
    return reason if reason in _FINISH_REASONS else "unknown"  # type: ignore[return-value]


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return f"HTTP {exc.status_code}: {inner['message']}"
    return f"HTTP {exc.status_code}"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _schema_name(schema: dict[str, Any]) -> str:
    title = str(schema.get("title") or "output")
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in title)[:64]
