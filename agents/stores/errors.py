"""Database failures as the runtime understands them: transient ones are retried, the rest answered.

A store call that fails because the database is briefly unavailable (SQLite
busy or locked, a full disk, an I/O error; PostgreSQL connection loss,
serialization failure, deadlock, too many connections, shutdown) raises
`RetryableError`, which the runtime retries with backoff. Any other database
error is a permanent `AgentError`. Exceptions that are not database errors
(bugs) pass through untouched, so they are never mistaken for an outage.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from relaychain.bus.errors import AgentError, RetryableError
from relaychain.schemas.errors import ErrorCode

__all__ = ["database_errors", "is_transient"]

_CODES: dict[str, tuple[ErrorCode, ErrorCode]] = {
    "ledger": (ErrorCode.LEDGER_UNAVAILABLE, ErrorCode.LEDGER_FAILED),
    "journal": (ErrorCode.JOURNAL_UNAVAILABLE, ErrorCode.JOURNAL_FAILED),
    "memory": (ErrorCode.MEMORY_UNAVAILABLE, ErrorCode.MEMORY_FAILED),
}

_TRANSIENT_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_PROTOCOL")
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57P")
"""Connection exceptions, transaction rollback (serialization, deadlock), insufficient resources, operator intervention."""


@contextmanager
def database_errors(store: Literal["ledger", "journal", "memory"]) -> Iterator[None]:
    """Translate the database errors raised inside into `RetryableError` (`<store>_unavailable`) or
    `AgentError` (`<store>_failed`)."""
    unavailable, failed = _CODES[store]
    try:
        yield
    except AgentError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise RetryableError(unavailable, f"{store} database unavailable: {type(exc).__name__}: {exc}") from exc
        if _is_database_error(exc):
            raise AgentError(failed, f"{store} database error: {type(exc).__name__}: {exc}") from exc
        raise


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        return name.startswith(_TRANSIENT_SQLITE) or any(
            word in str(exc) for word in ("database is locked", "database is busy", "disk I/O error")
        )
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and _is_database_error(exc):
        return sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES)
    # Raised while (re)connecting to PostgreSQL: refused, reset, timed out.
    return isinstance(exc, ConnectionError | TimeoutError)


def _is_database_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    return type(exc).__module__.startswith("asyncpg")
