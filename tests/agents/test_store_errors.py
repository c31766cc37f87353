"""Database failures become retryable or permanent agent errors, never an untyped crash."""

from __future__ import annotations

import socket
from datetime import date

import asyncpg
import pytest

from relaychain.agents.stores.errors import database_errors, is_transient
from relaychain.agents.stores.ledger import PostgresLedger
from relaychain.bus.errors import AgentError, RetryableError


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.exceptions.SerializationError("could not serialize access"), True),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), True),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (asyncpg.exceptions.UndefinedTableError("relation does not exist"), False),
        (ConnectionRefusedError(111, "refused"), True),
    ],
)
def test_postgres_errors_are_classified_by_sqlstate(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_errors_that_are_not_database_errors_pass_through() -> None:
    with pytest.raises(KeyError), database_errors("ledger"):
        raise KeyError("a bug, not an outage")


async def test_an_unreachable_postgres_ledger_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    ledger = PostgresLedger(f"postgresql://relaychain@127.0.0.1:{port}/relaychain")
    with pytest.raises(RetryableError) as caught:
        await ledger.spent("shop", "gpt-4o", date(2026, 3, 14))
    assert caught.value.code == "ledger_unavailable" and isinstance(caught.value, AgentError)
    await ledger.close()
