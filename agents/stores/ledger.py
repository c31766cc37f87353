"""The cost ledger: every model call's tokens and price, totalled per business x model x day x currency.

Each `Usage` event is stored once, keyed by its event id, so a redelivered
event is never counted twice; totals are summed from those rows when asked
for, so they always equal the sum of the recorded events. Money never
passes through float: SQLite keeps integer units of 1e-8 (its SUM over
TEXT or REAL would round), PostgreSQL keeps NUMERIC.

SQLite (a file under the data dir) is the default; PostgreSQL through an
asyncpg pool serves several tokenizer workers at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from relaychain.agents.stores.connections import PostgresPool, SqliteFile
from relaychain.agents.tokens.pricing import COST_QUANTUM, quantize_cost
from relaychain.schemas import Usage

if TYPE_CHECKING:
    pass

__all__ = ["POSTGRES_LEDGER_MIGRATIONS", "CostLedger", "LedgerRow", "PostgresLedger", "SqliteLedger", "spent_on"]


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """Totals of one business x model x day (UTC) x currency."""

    business: str
    model: str
    day: date
    currency: str
    input_tokens: int
    output_tokens: int
    input_cost: Decimal
    output_cost: Decimal
    calls: int

    @property
    def cost(self) -> Decimal:
        return self.input_cost + self.output_cost


class CostLedger(Protocol):
    async def record(self, usage: Usage) -> bool:
        """Store one usage event; False (nothing counted) when its id was already recorded."""
        ...

    async def totals(self, *, since: date | None = None) -> list[LedgerRow]:
        """Totals per business x model x day x currency, from `since` (inclusive), ordered by day, business, model."""
        ...

    async def close(self) -> None: ...


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_events (
    event_id TEXT PRIMARY KEY,
    business TEXT NOT NULL,
    model TEXT NOT NULL,
    day TEXT NOT NULL,
    currency TEXT NOT NULL,
    step TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    input_cost_e8 INTEGER NOT NULL,
    output_cost_e8 INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_events_by_day ON usage_events (day);
"""

_TOTALS_COLUMNS = (
    "business, model, day, currency, sum(input_tokens), sum(output_tokens), {input_cost}, {output_cost}, count(*)"
)
_GROUPING = " GROUP BY business, model, day, currency ORDER BY day, business, model, currency"


class SqliteLedger:
    """The ledger in one SQLite file (WAL); the schema is created on first use."""

    def __init__(self, path: str | Path) -> None:
        self._file = SqliteFile(path, _SQLITE_SCHEMA)

    async def record(self, usage: Usage) -> bool:
        db = await self._file.connection()
        step = usage.usage
        cursor = await db.execute(
            "INSERT INTO usage_events (event_id, business, model, day, currency, step, input_tokens, output_tokens,"
            " input_cost_e8, output_cost_e8, latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (
                usage.id,
                usage.business,
                step.model,
                _day_of(usage).isoformat(),
                step.currency,
                step.step,
                step.input_tokens,
                step.output_tokens,
                _to_units(step.input_cost),
                _to_units(step.output_cost),
                step.latency_ms,
                usage.created_at.isoformat(),
            ),
        )
        await db.commit()
        return cursor.rowcount == 1

    async def totals(self, *, since: date | None = None) -> list[LedgerRow]:
        db = await self._file.connection()
        columns = _TOTALS_COLUMNS.format(input_cost="sum(input_cost_e8)", output_cost="sum(output_cost_e8)")
        where, args = (" WHERE day >= ?", (since.isoformat(),)) if since else ("", ())
        async with db.execute(f"SELECT {columns} FROM usage_events{where}{_GROUPING}", args) as cursor:
            return [
                LedgerRow(
                    business=business,
                    model=model,
                    day=date.fromisoformat(day),
                    currency=currency,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    input_cost=_from_units(input_units),
                    output_cost=_from_units(output_units),
                    calls=calls,
                )
                async for business, model, day, currency, input_tokens, output_tokens, input_units, output_units, calls in cursor
            ]

    async def close(self) -> None:
        await self._file.close()


POSTGRES_LEDGER_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE relaychain_usage (
        event_id TEXT PRIMARY KEY,
        business TEXT NOT NULL,
        model TEXT NOT NULL,
        day DATE NOT NULL,
        currency CHAR(3) NOT NULL,
        step TEXT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        input_cost NUMERIC(38, 8) NOT NULL,
        output_cost NUMERIC(38, 8) NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX relaychain_usage_by_day ON relaychain_usage (day);
    """,
)
"""Schema versions of the cost ledger, applied in order by `migrate()`; append, never edit."""


class PostgresLedger:
    """The ledger in PostgreSQL through an asyncpg pool; run `migrate()` first."""

    def __init__(self, dsn: str, *, min_pool: int = 1, max_pool: int = 5) -> None:
        self._postgres = PostgresPool(dsn, min_size=min_pool, max_size=max_pool)

    async def migrate(self) -> int:
        """Apply the schema versions not yet applied; returns how many were. Safe to run concurrently."""
        return await self._postgres.migrate("cost_ledger", POSTGRES_LEDGER_MIGRATIONS)

    async def record(self, usage: Usage) -> bool:
        pool = await self._postgres.pool()
        step = usage.usage
        status = await pool.execute(
            "INSERT INTO relaychain_usage (event_id, business, model, day, currency, step, input_tokens,"
            " output_tokens, input_cost, output_cost, latency_ms, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (event_id) DO NOTHING",
            usage.id,
            usage.business,
            step.model,
            _day_of(usage),
            step.currency,
            step.step,
            step.input_tokens,
            step.output_tokens,
            quantize_cost(step.input_cost),
            quantize_cost(step.output_cost),
            step.latency_ms,
            usage.created_at,
        )
        return status == "INSERT 0 1"

    async def totals(self, *, since: date | None = None) -> list[LedgerRow]:
        pool = await self._postgres.pool()
        columns = _TOTALS_COLUMNS.format(input_cost="sum(input_cost)", output_cost="sum(output_cost)")
        where, args = (" WHERE day >= $1", (since,)) if since else ("", ())
        rows = await pool.fetch(f"SELECT {columns} FROM relaychain_usage{where}{_GROUPING}", *args)
        return [
            LedgerRow(
                business=row[0],
                model=row[1],
                day=row[2],
                currency=row[3].strip(),
                input_tokens=int(row[4]),
                output_tokens=int(row[5]),
                input_cost=quantize_cost(row[6]),
                output_cost=quantize_cost(row[7]),
                calls=row[8],
            )
            for row in rows
        ]

    async def close(self) -> None:
        await self._postgres.close()


async def spent_on(ledger: CostLedger, business: str, model: str, day: date) -> Decimal:
    """What `business` spent on `model` on `day` (UTC), in the model's currency: the router's daily budget check."""
    rows = await ledger.totals(since=day)
    return sum((r.cost for r in rows if (r.business, r.model, r.day) == (business, model, day)), Decimal(0))


def _day_of(usage: Usage) -> date:
    """The UTC day a call is billed on: when its usage event was created."""
    created = usage.created_at
    return created.date() if created.utcoffset() is None else created.astimezone(UTC).date()


def _to_units(amount: Decimal) -> int:
    return int(quantize_cost(amount).scaleb(8))


def _from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-8).quantize(COST_QUANTUM)
