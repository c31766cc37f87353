"""Errors an agent raises; the runtime turns them into typed `Error` events with a stable code."""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    """A request this agent cannot serve. `code` is stable; callers match on it, not on the message."""

    retryable: bool = False

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class RetryableError(AgentError):
    """A transient failure (timeout, broker hiccup, 429): retried with backoff, then dead-lettered.

    `retry_after_s` is the server's own hint (`Retry-After`); the runtime waits
    at least that long before the next attempt, capped by its retry policy.
    """

    retryable = True

    def __init__(
        self, code: str, message: str, *, details: dict[str, Any] | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(code, message, details=details)
        self.retry_after_s = retry_after_s
