"""A PostgreSQL database of its own per fault scenario, so row counts are the scenario's alone."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg


async def create_database(server_dsn: str) -> str:
    name = f"faults_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(server_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    parts = urlsplit(server_dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def ledger_rows(dsn: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            exists = await connection.fetchval("SELECT to_regclass('relaychain_usage') IS NOT NULL")
            return int(await connection.fetchval("SELECT count(*) FROM relaychain_usage")) if exists else 0
        finally:
            await connection.close()

    return asyncio.run(count())
