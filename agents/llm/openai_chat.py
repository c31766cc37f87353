"""OpenAI and OpenAI-compatible chat models through the async `openai` SDK.

Retries are our own loop, not the SDK's `max_retries`: each attempt becomes
a span event and a log line with its cause and delay, the model's config
sets the count, and a stream that already handed tokens to the caller is
never silently restarted (the caller would see the text twice).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import openai
from opentelemetry import trace

from relaychain.agents.llm.base import (
    Completion,
    FinishReason,
    ModelOutputInvalid,
    ModelRateLimited,
    ModelRequestRejected,
    ModelServerError,
    ModelTimeout,
    ModelUnavailable,
    TokenCallback,
)
from relaychain.bus.errors import AgentError
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import ModelConfig, Provider

__all__ = ["Backoff", "OpenAIChatModel"]

log = logging.getLogger(__name__)

_FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "content_filter", "tool_calls"})
_RETRY_AFTER_CAP_S = 30.0


class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n))."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 8.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, _RETRY_AFTER_CAP_S)
        return random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


class _Transient(Exception):
    """One failed attempt that may succeed if retried; `error(attempts)` is what the caller gets when none does."""

    def __init__(self, error: Callable[[int], AgentError], retry_after_s: float | None = None) -> None:
        super().__init__(error(1).message)
        self.error = error
        self.retry_after_s = retry_after_s


class OpenAIChatModel:
    """A model served over the OpenAI chat completions API. The API key never appears in repr or logs."""

    def __init__(self, name: str, config: ModelConfig, api_key: str | None, *, backoff: Backoff | None = None) -> None:
        if config.provider not in (Provider.OPENAI, Provider.OPENAI_COMPATIBLE):
            raise ValueError(f"model {name!r} has provider {config.provider}, not an OpenAI API")
        self.name = name
        self.config = config
        self.provider = config.provider.value
        self._model_id = config.model_id or name
        self._backoff = backoff or Backoff()
        self._client: openai.AsyncOpenAI | None = None
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"OpenAIChatModel(name={self.name!r}, model_id={self._model_id!r}, base_url={self.config.base_url!r})"

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
        client = self._ensure_client()
        timeout = timeout_s or self.config.timeout_s
        request = self._request(messages, max_tokens, temperature, json_schema)
        started = time.perf_counter()
        attempt = 0
        while True:
            emitted: list[str] = []
            try:
                if on_token is None:
                    text, model, usage, finish = await self._once(client, request, timeout)
                else:
                    text, model, usage, finish = await self._stream(client, request, timeout, on_token, emitted)
            except _Transient as failure:
                if emitted:
                    raise ModelServerError(
                        self.name, f"stream broke after output was sent: {failure}", attempts=attempt + 1, streamed=True
                    ) from None
                if attempt >= self.config.max_retries:
                    raise failure.error(attempt + 1) from None
                delay = self._backoff.delay(attempt, failure.retry_after_s)
                code = failure.error(attempt + 1).code
                log.warning("model %s attempt %d failed (%s); retrying in %.2f s", self.name, attempt + 1, code, delay)
                trace.get_current_span().add_event(
                    "relaychain.model.retry",
                    {"gen_ai.request.model": self.name, "attempt": attempt + 1, "error.type": code, "delay_s": delay},
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            return Completion(
                text=text,
                model=self.name,
                response_model=model or self._model_id,
                provider=self.provider,
                input_tokens=usage[0],
                output_tokens=usage[1],
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
            # max_retries=0: the loop in `complete` owns retries (see the module docstring).
            self._client = openai.AsyncOpenAI(api_key=self._api_key, base_url=self.config.base_url, max_retries=0)
        return self._client

    def _request(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        temperature: float | None,
        json_schema: dict[str, Any] | None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self._model_id,
            "messages": [m.model_dump(exclude_none=True) for m in messages],
            "max_tokens": max_tokens,
        }
        if temperature is not None:
            request["temperature"] = temperature
        # Structured outputs are an OpenAI feature; compatible servers vary, so they get plain text and the formatter.
        if json_schema is not None and self.config.provider is Provider.OPENAI:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": _schema_name(json_schema), "schema": json_schema, "strict": False},
            }
        return request

    async def _once(
        self, client: openai.AsyncOpenAI, request: dict[str, Any], timeout: float
    ) -> tuple[str, str, tuple[int, int], FinishReason]:
        try:
            response = await client.chat.completions.create(**request, timeout=timeout)
        except openai.OpenAIError as exc:
            raise self._classify(exc, timeout) from exc
        if not response.choices:
            raise ModelOutputInvalid(self.name, "no choices in the response")
        choice = response.choices[0]
        return choice.message.content or "", response.model, self._usage(response.usage), _finish(choice.finish_reason)

    async def _stream(
        self,
        client: openai.AsyncOpenAI,
        request: dict[str, Any],
        timeout: float,
        on_token: TokenCallback,
        emitted: list[str],
    ) -> tuple[str, str, tuple[int, int], FinishReason]:
        model, finish, usage = "", "unknown", None
        try:
            # The timeout covers the whole stream, not only its first byte.
            async with asyncio.timeout(timeout):
                stream = await client.chat.completions.create(
                    **request, stream=True, stream_options={"include_usage": True}, timeout=timeout
                )
                async for chunk in stream:
                    model = chunk.model or model
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.delta.content:
                            emitted.append(choice.delta.content)
                            on_token(choice.delta.content)
                        if choice.finish_reason:
                            finish = choice.finish_reason
        except TimeoutError:
            raise _Transient(lambda n: ModelTimeout(self.name, timeout, attempts=n)) from None
        except openai.OpenAIError as exc:
            raise self._classify(exc, timeout) from exc
        return "".join(emitted), model, self._usage(usage), _finish(finish)

    def _usage(self, usage: Any) -> tuple[int, int]:
        if usage is None:
            raise ModelOutputInvalid(self.name, "the server reported no token usage")
        return usage.prompt_tokens, usage.completion_tokens

    def _classify(self, exc: openai.OpenAIError, timeout: float) -> Exception:
        """A typed error for a failed call; `_Transient` wraps those worth retrying."""
        if isinstance(exc, openai.APITimeoutError):
            return _Transient(lambda n: ModelTimeout(self.name, timeout, attempts=n))
        if isinstance(exc, openai.APIConnectionError):
            return _Transient(lambda n: ModelServerError(self.name, f"connection failed: {exc}", attempts=n))
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = _status_message(exc)
            if status == 429:
                return _Transient(lambda n: ModelRateLimited(self.name, message, attempts=n), _retry_after(exc))
            if status >= 500 or status in (408, 409):
                return _Transient(
                    lambda n: ModelServerError(self.name, message, status=status, attempts=n), _retry_after(exc)
                )
            if status in (401, 403, 404):
                return ModelUnavailable(self.name, f"HTTP {status}: {message}")
            return ModelRequestRejected(self.name, message, status=status)
        return ModelOutputInvalid(self.name, str(exc))


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
