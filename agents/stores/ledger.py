"""The cost ledger: every model call's tokens and price, totalled per business x model x day x currency.

Each `Usage` event is stored once, keyed by its event id, so a redelivered
event is never counted twice. Running totals per business x model x day x
currency are updated in the same statement as the insert, and only when the
insert actually stored a row, so they always equal the sum of the recorded
events and reading one (the router's budget check) is a key lookup, not a
scan of the day. Transient database errors raise `RetryableError` (see
`relaychain.agents.stores.errors`), so the runtime retries them. Money never
passes through float: SQLite keeps integer units of 1e-8 (its SUM over
TEXT or REAL would round), PostgreSQL keeps NUMERIC.

SQLite (a file under the data dir) is the default; PostgreSQL through an
asyncpg pool serves several tokenizer workers at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from relaychain.agents.stores.batching import Batched, insert_new
from relaychain.agents.stores.connections import PostgresPool, SqliteFile
from relaychain.agents.stores.errors import database_errors
from relaychain.agents.tokens.pricing import COST_QUANTUM, quantize_cost
from relaychain.schemas import Usage
from relaychain.schemas.events import AppliedPrice

if TYPE_CHECKING:
    pass

__all__ = ["POSTGRES_LEDGER_MIGRATIONS", "CostLedger", "LedgerRow", "PostgresLedger", "SqliteLedger", "TenantRow"]


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
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def cost(self) -> Decimal:
        return self.input_cost + self.output_cost


@dataclass(frozen=True, slots=True)
class TenantRow:
    """Totals of one gateway tenant x day (UTC) x currency; usage without a tenant is not in these."""

    tenant: str
    day: date
    currency: str
    input_tokens: int
    output_tokens: int
    cost: Decimal
    calls: int


class CostLedger(Protocol):
    async def record(self, usage: Usage) -> bool:
        """Store one usage event; False (nothing counted) when its id was already recorded."""
        ...

    async def totals(self, *, since: date | None = None) -> list[LedgerRow]:
        """Totals per business x model x day x currency, from `since` (inclusive), ordered by day, business, model."""
        ...

    async def spent(self, business: str, model: str, day: date) -> Decimal:
        """What `business` spent on `model` on `day` (UTC), in the model's currency: the router's daily budget check."""
        ...

    async def tenant_totals(self, *, since: date | None = None) -> list[TenantRow]:
        """Totals per tenant x day x currency, from `since` (inclusive), ordered by day, tenant."""
        ...

    async def tenant_spent(self, tenant: str, day: date) -> dict[str, Decimal]:
        """What `tenant` spent on `day` (UTC) per currency: the router's per-tenant budget check."""
        ...

    async def close(self) -> None: ...


_SQLITE_MIGRATIONS: tuple[str, ...] = (
    # Files written before versioning already hold this table: IF NOT EXISTS.
    """
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
    """,
    # The trigger fires only for rows actually inserted: `ON CONFLICT DO NOTHING` inserts none. Idempotent: a
    # second run finds every group of usage_events already in usage_totals.
    """
    CREATE TABLE IF NOT EXISTS usage_totals (
        business TEXT NOT NULL,
        model TEXT NOT NULL,
        day TEXT NOT NULL,
        currency TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        input_cost_e8 INTEGER NOT NULL,
        output_cost_e8 INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        PRIMARY KEY (business, model, day, currency)
    );
    INSERT OR IGNORE INTO usage_totals
        SELECT business, model, day, currency, sum(input_tokens), sum(output_tokens),
               sum(input_cost_e8), sum(output_cost_e8), count(*)
        FROM usage_events GROUP BY business, model, day, currency;
    CREATE TRIGGER IF NOT EXISTS usage_totals_on_insert AFTER INSERT ON usage_events BEGIN
        INSERT INTO usage_totals VALUES (
            new.business, new.model, new.day, new.currency, new.input_tokens, new.output_tokens,
            new.input_cost_e8, new.output_cost_e8, 1)
        ON CONFLICT (business, model, day, currency) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            input_cost_e8 = input_cost_e8 + excluded.input_cost_e8,
            output_cost_e8 = output_cost_e8 + excluded.output_cost_e8,
            calls = calls + 1;
    END
    """,
    # Providers bill cached prompt tokens apart and report reasoning tokens; each row keeps the unit prices it
    # was billed at (Decimal as text), so a later price change never reprices it.
    """
    ALTER TABLE usage_events ADD COLUMN cached_input_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_events ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_events ADD COLUMN input_per_million TEXT;
    ALTER TABLE usage_events ADD COLUMN cached_input_per_million TEXT;
    ALTER TABLE usage_events ADD COLUMN output_per_million TEXT;
    ALTER TABLE usage_events ADD COLUMN price_effective_from TEXT;
    ALTER TABLE usage_events ADD COLUMN price_tier INTEGER;
    ALTER TABLE usage_totals ADD COLUMN cached_input_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_totals ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
    DROP TRIGGER usage_totals_on_insert;
    CREATE TRIGGER usage_totals_on_insert AFTER INSERT ON usage_events BEGIN
        INSERT INTO usage_totals (business, model, day, currency, input_tokens, output_tokens,
            input_cost_e8, output_cost_e8, calls, cached_input_tokens, reasoning_tokens)
        VALUES (new.business, new.model, new.day, new.currency, new.input_tokens, new.output_tokens,
            new.input_cost_e8, new.output_cost_e8, 1, new.cached_input_tokens, new.reasoning_tokens)
        ON CONFLICT (business, model, day, currency) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            input_cost_e8 = input_cost_e8 + excluded.input_cost_e8,
            output_cost_e8 = output_cost_e8 + excluded.output_cost_e8,
            calls = calls + 1,
            cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
            reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens;
    END
    """,
    # Gateway tenants: the column (NULL for usage without one) and a running total per tenant x day x currency.
    """
    ALTER TABLE usage_events ADD COLUMN tenant TEXT;
    CREATE TABLE usage_tenant_totals (
        tenant TEXT NOT NULL,
        day TEXT NOT NULL,
        currency TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_e8 INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        PRIMARY KEY (tenant, day, currency)
    );
    CREATE TRIGGER usage_tenant_totals_on_insert AFTER INSERT ON usage_events WHEN new.tenant IS NOT NULL BEGIN
        INSERT INTO usage_tenant_totals VALUES (
            new.tenant, new.day, new.currency, new.input_tokens, new.output_tokens,
            new.input_cost_e8 + new.output_cost_e8, 1)
        ON CONFLICT (tenant, day, currency) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cost_e8 = cost_e8 + excluded.cost_e8,
            calls = calls + 1;
    END
    """,
)
"""Schema versions of the SQLite ledger, counted in the file's `user_version`; append, never edit."""

_USAGE_COLUMNS = (
    "event_id, business, model, day, currency, step, input_tokens, output_tokens,"
    " input_cost_e8, output_cost_e8, latency_ms, created_at, cached_input_tokens, reasoning_tokens,"
    " input_per_million, cached_input_per_million, output_per_million, price_effective_from, price_tier,"
    " tenant"
)


def _usage_row(usage: Usage) -> tuple[Any, ...]:
    """The usage_events row of `usage`, in `_USAGE_COLUMNS` order."""
    step = usage.usage
    applied = step.price
    return (
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
        step.cached_input_tokens,
        step.reasoning_tokens,
        *(_price_columns(applied, str) if applied else (None,) * 5),
        usage.tenant,
    )


_TOTALS_COLUMNS = (
    "business, model, day, currency, input_tokens, output_tokens, {input_cost}, {output_cost}, calls,"
    " cached_input_tokens, reasoning_tokens"
)
_ORDER = " ORDER BY day, business, model, currency"


class SqliteLedger:
    """The ledger in one SQLite file (WAL); the schema is created on first use."""

    def __init__(self, path: str | Path) -> None:
        self._file = SqliteFile(path, migrations=_SQLITE_MIGRATIONS)
        self._insert: Batched[tuple[Any, ...], bool] = Batched(self._insert_rows)

    async def record(self, usage: Usage) -> bool:
        with database_errors("ledger"):
            return await self._insert(_usage_row(usage))

    async def _insert_rows(self, rows: list[tuple[Any, ...]]) -> list[bool]:
        """One statement for the batch: the rows commit together; RETURNING names the ones that were new."""
        db = await self._file.connection()
        return await insert_new(db, "usage_events", _USAGE_COLUMNS, rows)

    async def totals(self, *, since: date | None = None) -> list[LedgerRow]:
        with database_errors("ledger"):
            return await self._totals(since)

    async def _totals(self, since: date | None) -> list[LedgerRow]:
        db = await self._file.connection()
        columns = _TOTALS_COLUMNS.format(input_cost="input_cost_e8", output_cost="output_cost_e8")
        where, args = (" WHERE day >= ?", (since.isoformat(),)) if since else ("", ())
        async with db.execute(f"SELECT {columns} FROM usage_totals{where}{_ORDER}", args) as cursor:
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
                    cached_input_tokens=cached,
                    reasoning_tokens=reasoning,
                )
                async for (
                    business,
                    model,
                    day,
                    currency,
                    input_tokens,
                    output_tokens,
                    input_units,
                    output_units,
                    calls,
                    cached,
                    reasoning,
                ) in cursor
            ]

    async def spent(self, business: str, model: str, day: date) -> Decimal:
        with database_errors("ledger"):
            db = await self._file.connection()
            rows = list(
                await db.execute_fetchall(
                    "SELECT coalesce(sum(input_cost_e8 + output_cost_e8), 0) FROM usage_totals"
                    " WHERE business = ? AND model = ? AND day = ?",
                    (business, model, day.isoformat()),
                )
            )
        return _from_units(rows[0][0])

    async def tenant_totals(self, *, since: date | None = None) -> list[TenantRow]:
        where, args = (" WHERE day >= ?", (since.isoformat(),)) if since else ("", ())
        with database_errors("ledger"):
            db = await self._file.connection()
            rows = await db.execute_fetchall(
                "SELECT tenant, day, currency, input_tokens, output_tokens, cost_e8, calls FROM usage_tenant_totals"
                f"{where} ORDER BY day, tenant, currency",
                args,
            )
        return [
            TenantRow(tenant, date.fromisoformat(day), currency, tokens_in, tokens_out, _from_units(units), calls)
            for tenant, day, currency, tokens_in, tokens_out, units, calls in rows
        ]

    async def tenant_spent(self, tenant: str, day: date) -> dict[str, Decimal]:
        with database_errors("ledger"):
            db = await self._file.connection()
            rows = await db.execute_fetchall(
                "SELECT currency, cost_e8 FROM usage_tenant_totals WHERE tenant = ? AND day = ?",
                (tenant, day.isoformat()),
            )
        return {currency: _from_units(units) for currency, units in rows}

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
    # Usage written by older workers while this runs would miss the totals: hold their inserts off.
    """
    LOCK TABLE relaychain_usage IN SHARE MODE;
    CREATE TABLE relaychain_usage_totals (
        business TEXT NOT NULL,
        model TEXT NOT NULL,
        day DATE NOT NULL,
        currency CHAR(3) NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        input_cost NUMERIC(38, 8) NOT NULL,
        output_cost NUMERIC(38, 8) NOT NULL,
        calls BIGINT NOT NULL,
        PRIMARY KEY (business, model, day, currency)
    );
    INSERT INTO relaychain_usage_totals
        SELECT business, model, day, currency, sum(input_tokens), sum(output_tokens),
               sum(input_cost), sum(output_cost), count(*)
        FROM relaychain_usage GROUP BY business, model, day, currency;
    """,
    """
    ALTER TABLE relaychain_usage
        ADD COLUMN cached_input_tokens BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN input_per_million NUMERIC,
        ADD COLUMN cached_input_per_million NUMERIC,
        ADD COLUMN output_per_million NUMERIC,
        ADD COLUMN price_effective_from DATE,
        ADD COLUMN price_tier INTEGER;
    ALTER TABLE relaychain_usage_totals
        ADD COLUMN cached_input_tokens BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
    """,
    # Gateway tenants: the column (NULL for usage without one) and a running total per tenant x day x currency.
    """
    ALTER TABLE relaychain_usage ADD COLUMN tenant TEXT;
    CREATE TABLE relaychain_usage_tenant_totals (
        tenant TEXT NOT NULL,
        day DATE NOT NULL,
        currency CHAR(3) NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cost NUMERIC(38, 8) NOT NULL,
        calls BIGINT NOT NULL,
        PRIMARY KEY (tenant, day, currency)
    );
    """,
)
"""Schema versions of the cost ledger, applied in order by `migrate()`; append, never edit."""


_POSTGRES_RECORD = """
WITH inserted AS (
    INSERT INTO relaychain_usage (event_id, business, model, day, currency, step, input_tokens,
        output_tokens, input_cost, output_cost, latency_ms, created_at, cached_input_tokens, reasoning_tokens,
        input_per_million, cached_input_per_million, output_per_million, price_effective_from, price_tier, tenant)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING business, model, day, currency, input_tokens, output_tokens, input_cost, output_cost,
        cached_input_tokens, reasoning_tokens, tenant
), tenant_total AS (
    INSERT INTO relaychain_usage_tenant_totals AS tt
        SELECT tenant, day, currency, input_tokens, output_tokens, input_cost + output_cost, 1
        FROM inserted WHERE tenant IS NOT NULL
    ON CONFLICT (tenant, day, currency) DO UPDATE SET
        input_tokens = tt.input_tokens + excluded.input_tokens,
        output_tokens = tt.output_tokens + excluded.output_tokens,
        cost = tt.cost + excluded.cost,
        calls = tt.calls + 1
)
INSERT INTO relaychain_usage_totals AS t (business, model, day, currency, input_tokens, output_tokens,
        input_cost, output_cost, calls, cached_input_tokens, reasoning_tokens)
    SELECT business, model, day, currency, input_tokens, output_tokens, input_cost, output_cost, 1,
        cached_input_tokens, reasoning_tokens FROM inserted
ON CONFLICT (business, model, day, currency) DO UPDATE SET
    input_tokens = t.input_tokens + excluded.input_tokens,
    output_tokens = t.output_tokens + excluded.output_tokens,
    input_cost = t.input_cost + excluded.input_cost,
    output_cost = t.output_cost + excluded.output_cost,
    calls = t.calls + 1,
    cached_input_tokens = t.cached_input_tokens + excluded.cached_input_tokens,
    reasoning_tokens = t.reasoning_tokens + excluded.reasoning_tokens
"""
"""One statement: the usage row, and the running total only when that row was new (redelivery counts once)."""


class PostgresLedger:
    """The ledger in PostgreSQL through an asyncpg pool; run `migrate()` first."""

    def __init__(self, dsn: str, *, min_pool: int = 1, max_pool: int = 5) -> None:
        self._postgres = PostgresPool(dsn, min_size=min_pool, max_size=max_pool)

    async def migrate(self) -> int:
        """Apply the schema versions not yet applied; returns how many were. Safe to run concurrently."""
        return await self._postgres.migrate("cost_ledger", POSTGRES_LEDGER_MIGRATIONS)

    async def record(self, usage: Usage) -> bool:
        step = usage.usage
        with database_errors("ledger"):
            pool = await self._postgres.pool()
            status = await pool.execute(
                _POSTGRES_RECORD,
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
                step.cached_input_tokens,
                step.reasoning_tokens,
                *(_price_columns(step.price, lambda value: value) if step.price else (None,) * 5),
                usage.tenant,
            )
        return status == "INSERT 0 1"

    async def totals(self, *, since: date | None = None) -> list[LedgerRow]:
        columns = _TOTALS_COLUMNS.format(input_cost="input_cost", output_cost="output_cost")
        where, args = (" WHERE day >= $1", (since,)) if since else ("", ())
        with database_errors("ledger"):
            pool = await self._postgres.pool()
            rows = await pool.fetch(f"SELECT {columns} FROM relaychain_usage_totals{where}{_ORDER}", *args)
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
                calls=int(row[8]),
                cached_input_tokens=int(row[9]),
                reasoning_tokens=int(row[10]),
            )
            for row in rows
        ]

    async def spent(self, business: str, model: str, day: date) -> Decimal:
        with database_errors("ledger"):
            pool = await self._postgres.pool()
            amount = await pool.fetchval(
                "SELECT coalesce(sum(input_cost + output_cost), 0) FROM relaychain_usage_totals"
                " WHERE business = $1 AND model = $2 AND day = $3",
                business,
                model,
                day,
            )
        return quantize_cost(amount)

    async def tenant_totals(self, *, since: date | None = None) -> list[TenantRow]:
        where, args = (" WHERE day >= $1", (since,)) if since else ("", ())
        with database_errors("ledger"):
            pool = await self._postgres.pool()
            rows = await pool.fetch(
                "SELECT tenant, day, currency, input_tokens, output_tokens, cost, calls"
                f" FROM relaychain_usage_tenant_totals{where} ORDER BY day, tenant, currency",
                *args,
            )
        return [TenantRow(r[0], r[1], r[2].strip(), int(r[3]), int(r[4]), quantize_cost(r[5]), int(r[6])) for r in rows]

    async def tenant_spent(self, tenant: str, day: date) -> dict[str, Decimal]:
        with database_errors("ledger"):
            pool = await self._postgres.pool()
            rows = await pool.fetch(
                "SELECT currency, cost FROM relaychain_usage_tenant_totals WHERE tenant = $1 AND day = $2", tenant, day
            )
        return {r[0].strip(): quantize_cost(r[1]) for r in rows}

    async def close(self) -> None:
        await self._postgres.close()


def _price_columns(applied: AppliedPrice, decimal: Callable[[Decimal], Any]) -> tuple[Any, ...]:
    """The applied unit prices as the five price columns; `decimal` converts amounts for the database."""
    return (
        decimal(applied.input_per_million),
        decimal(applied.cached_input_per_million),
        decimal(applied.output_per_million),
        applied.effective_from.isoformat() if applied.effective_from and decimal is str else applied.effective_from,
        applied.tier,
    )


def _day_of(usage: Usage) -> date:
    """The UTC day a call is billed on: when its usage event was created."""
    created = usage.created_at
    return created.date() if created.utcoffset() is None else created.astimezone(UTC).date()


def _to_units(amount: Decimal) -> int:
    return int(quantize_cost(amount).scaleb(8))


def _from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-8).quantize(COST_QUANTUM)
