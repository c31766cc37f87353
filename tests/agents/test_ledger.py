"""One contract for every CostLedger: SQLite and PostgreSQL must count the same money."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from relaychain.agents.stores import connections
from relaychain.agents.stores.ledger import (
    CostLedger,
    LedgerRow,
    PostgresLedger,
    SqliteLedger,
)
from relaychain.bus.errors import AgentError, RetryableError
from relaychain.schemas import StepUsage, Usage

LedgerFactory = Callable[[], Awaitable[CostLedger]]
DAY = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerFactory]:
    """Opens a fresh handle on the same underlying ledger each call, like a restarted worker."""
    opened: list[CostLedger] = []

    async def factory() -> CostLedger:
        ledger: CostLedger
        if request.param == "sqlite":
            ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        else:
            pg = PostgresLedger(request.getfixturevalue("postgres_dsn"))
            await pg.migrate()
            ledger = pg
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        await ledger.close()


def business() -> str:
    # PostgreSQL is shared by the session: each test books to its own businesses.
    return f"biz-{uuid.uuid4().hex[:12]}"


def usage(
    business_name: str,
    model: str = "gpt-4o",
    *,
    input_tokens: int = 1000,
    output_tokens: int = 100,
    input_cost: str = "0.0025",
    output_cost: str = "0.001",
    currency: str = "USD",
    at: datetime = DAY,
) -> Usage:
    return Usage(
        business=business_name,
        created_at=at,
        usage=StepUsage(
            step="generate",
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            input_cost=Decimal(input_cost),
            output_cost=Decimal(output_cost),
            currency=currency,
            latency_ms=12.5,
        ),
    )


async def rows_of(ledger: CostLedger, *businesses: str, since: date | None = None) -> list[LedgerRow]:
    return [row for row in await ledger.totals(since=since) if row.business in businesses]


async def test_an_empty_ledger_has_no_rows(open_ledger: LedgerFactory) -> None:
    ledger = await open_ledger()
    assert await rows_of(ledger, business()) == []


async def test_a_redelivered_usage_event_counts_once(open_ledger: LedgerFactory) -> None:
    ledger = await open_ledger()
    shop = business()
    event = usage(shop)
    assert await ledger.record(event) is True
    assert await ledger.record(event) is False
    restarted = await open_ledger()
    assert await restarted.record(event) is False
    [row] = await rows_of(restarted, shop)
    assert (row.calls, row.input_tokens, row.output_tokens) == (1, 1000, 100)


async def test_totals_group_by_business_model_day_and_currency(open_ledger: LedgerFactory) -> None:
    ledger = await open_ledger()
    push, weibo = business(), business()
    events = [
        usage(push),
        usage(push, input_tokens=3000, input_cost="0.0075"),
        usage(push, "gpt-4o-mini", input_cost="0.00015", output_cost="0.00006"),
        usage(push, at=DAY + timedelta(days=1)),
        usage(weibo, "ernie-4.0-8k", input_cost="0.03", output_cost="0.009", currency="CNY"),
        usage(weibo, "ernie-4.0-8k", input_cost="0.03", output_cost="0.009", currency="CNY"),
    ]
    for event in events:
        assert await ledger.record(event)
    rows = await rows_of(ledger, push, weibo)
    summary = {
        (r.business, r.model, r.day, r.currency): (r.calls, r.input_tokens, r.input_cost, r.output_cost) for r in rows
    }
    today, tomorrow = DAY.date(), DAY.date() + timedelta(days=1)
    assert summary == {
        (push, "gpt-4o", today, "USD"): (2, 4000, Decimal("0.01"), Decimal("0.002")),
        (push, "gpt-4o-mini", today, "USD"): (1, 1000, Decimal("0.00015"), Decimal("0.00006")),
        (push, "gpt-4o", tomorrow, "USD"): (1, 1000, Decimal("0.0025"), Decimal("0.001")),
        (weibo, "ernie-4.0-8k", today, "CNY"): (2, 2000, Decimal("0.06"), Decimal("0.018")),
    }
    assert [r.day for r in rows] == sorted(r.day for r in rows)


async def test_totals_equal_the_sum_of_usage_events(open_ledger: LedgerFactory) -> None:
    ledger = await open_ledger()
    shop = business()
    events = [
        usage(shop, input_tokens=n, output_tokens=2 * n, input_cost=f"0.0000000{n % 10}", output_cost="0.12345678")
        for n in range(1, 40)
    ]
    results = await asyncio.gather(*(ledger.record(e) for e in events), *(ledger.record(e) for e in events[:10]))
    assert results.count(True) == len(events)
    [row] = await rows_of(ledger, shop)
    assert row.calls == len(events)
    assert row.input_tokens == sum(e.usage.input_tokens for e in events)
    assert row.output_tokens == sum(e.usage.output_tokens for e in events)
    assert row.input_cost == sum((e.usage.input_cost for e in events), Decimal(0))
    assert row.output_cost == sum((e.usage.output_cost for e in events), Decimal(0))
    assert row.cost == row.input_cost + row.output_cost
    assert isinstance(row.input_cost, Decimal)


async def test_since_keeps_days_from_that_day_on(open_ledger: LedgerFactory) -> None:
    ledger = await open_ledger()
    shop = business()
    for days in range(3):
        await ledger.record(usage(shop, at=DAY + timedelta(days=days)))
    rows = await rows_of(ledger, shop, since=DAY.date() + timedelta(days=1))
    assert [r.day for r in rows] == [DAY.date() + timedelta(days=1), DAY.date() + timedelta(days=2)]


async def test_calls_are_booked_on_their_utc_day(open_ledger: LedgerFactory) -> None:
    ledger = await open_ledger()
    shop = business()
    beijing = timezone(timedelta(hours=8))
    await ledger.record(usage(shop, at=datetime(2026, 3, 15, 7, 0, tzinfo=beijing)))
    [row] = await rows_of(ledger, shop)
    assert row.day == date(2026, 3, 14)


async def test_costs_are_kept_to_1e_8(open_ledger: LedgerFactory) -> None:
    ledger = await open_ledger()
    shop = business()
    await ledger.record(usage(shop, input_cost="0.000000015", output_cost="123456789.12345678"))
    [row] = await rows_of(ledger, shop)
    assert row.input_cost == Decimal("0.00000002")
    assert row.output_cost == Decimal("123456789.12345678")


async def test_spend_of_one_business_and_model_on_one_day(open_ledger: LedgerFactory) -> None:
    ledger = await open_ledger()
    shop, other = business(), business()
    await ledger.record(usage(shop, input_cost="0.5", output_cost="0.25"))
    await ledger.record(usage(shop, input_cost="1", output_cost="0"))
    await ledger.record(usage(shop, "gpt-4o-mini", input_cost="7", output_cost="0"))
    await ledger.record(usage(shop, at=DAY + timedelta(days=1), input_cost="9", output_cost="0"))
    await ledger.record(usage(other, input_cost="11", output_cost="0"))
    assert await ledger.spent(shop, "gpt-4o", DAY.date()) == Decimal("1.75")
    assert await ledger.spent(shop, "gpt-4o", DAY.date() - timedelta(days=1)) == Decimal(0)


async def test_running_totals_count_each_event_once_under_redelivery(open_ledger: LedgerFactory) -> None:
    """Concurrent workers and restarts deliver the same events again: the day's total moves once per event."""
    first, restarted = await open_ledger(), await open_ledger()
    shop = business()
    events = [usage(shop, input_cost="0.1", output_cost="0.01") for _ in range(25)]
    await asyncio.gather(*(first.record(e) for e in events), *(restarted.record(e) for e in events))
    for event in events[::3]:
        assert await restarted.record(event) is False
    assert await first.spent(shop, "gpt-4o", DAY.date()) == Decimal("2.75")
    [row] = await rows_of(restarted, shop)
    assert (row.calls, row.input_tokens, row.cost) == (25, 25_000, Decimal("2.75"))


async def test_a_locked_sqlite_ledger_is_a_retryable_error(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    ledger._file._busy_timeout_s = 0.05
    await ledger.record(usage(business()))
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(RetryableError) as caught:
            await ledger.record(usage(business()))
        assert caught.value.code == "ledger_unavailable"
    finally:
        blocker.rollback()
        blocker.close()
    assert await ledger.record(usage(business())) is True
    await ledger.close()


async def test_a_permanent_database_error_is_not_retried(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    await ledger.record(usage(business()))
    with sqlite3.connect(path) as other:
        other.execute("DROP TRIGGER usage_totals_on_insert")
        other.execute("DROP TABLE usage_totals")
    with pytest.raises(AgentError) as caught:
        await ledger.spent(business(), "gpt-4o", DAY.date())
    assert caught.value.code == "ledger_failed" and not caught.value.retryable
    await ledger.close()


@pytest.fixture
def check_identity_on_every_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path is compared with the open file every few hundred ms; these tests look at the very next write."""
    monkeypatch.setattr(connections, "IDENTITY_CHECK_S", 0.0)


@pytest.mark.parametrize("removed", [("",), ("", "-wal", "-shm")], ids=["file", "file-and-wal"])
@pytest.mark.usefixtures("check_identity_on_every_use")
async def test_a_removed_ledger_file_is_restored_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, removed: tuple[str, ...]
) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    shop = business()
    await ledger.record(usage(shop))
    for suffix in removed:
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    await ledger.record(usage(shop))
    assert "was removed while open" in caplog.text
    await ledger.close()
    reopened = SqliteLedger(path)
    [row] = await rows_of(reopened, shop)
    assert row.calls == 2, "the rows written before the removal and after it are both in the file at the path"
    await reopened.close()


async def test_rows_written_after_a_removal_between_checks_are_restored_on_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "IDENTITY_CHECK_S", 3600.0)
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    shop = business()
    await ledger.record(usage(shop))
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    await ledger.record(usage(shop))
    assert not path.exists(), "no check yet: the second row went to the open (removed) file"
    await ledger.close()
    assert "was removed while open" in caplog.text
    reopened = SqliteLedger(path)
    [row] = await rows_of(reopened, shop)
    assert row.calls == 2, "closing restored the file with both rows"
    await reopened.close()


@pytest.mark.usefixtures("check_identity_on_every_use")
async def test_a_replaced_ledger_file_is_reopened_not_written_behind_its_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    old, new = business(), business()
    await ledger.record(usage(old))
    replacement = tmp_path / "fresh.sqlite3"
    fresh = SqliteLedger(replacement)
    await fresh.record(usage(new))
    await fresh.close()
    replacement.replace(path)
    await ledger.record(usage(new))
    assert "was replaced by another file" in caplog.text
    assert [(r.business, r.calls) for r in await rows_of(ledger, old, new)] == [(new, 2)]
    await ledger.close()


async def test_a_ledger_written_before_running_totals_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    from relaychain.agents.stores.ledger import _SQLITE_MIGRATIONS

    path = tmp_path / "ledger.sqlite3"
    shop = business()
    with sqlite3.connect(path) as old:
        old.executescript(_SQLITE_MIGRATIONS[0])
        old.execute(
            "INSERT INTO usage_events VALUES ('e1', ?, 'gpt-4o', '2026-03-14', 'USD', 'generate', 10, 5,"
            " 100000000, 50000000, 1.0, '2026-03-14T12:00:00+00:00')",
            (shop,),
        )
    ledger = SqliteLedger(path)
    assert await ledger.spent(shop, "gpt-4o", DAY.date()) == Decimal("1.5")
    await ledger.record(usage(shop, input_cost="1", output_cost="0"))
    [row] = await rows_of(ledger, shop)
    assert (row.calls, row.cost) == (2, Decimal("2.5"))
    await ledger.close()


@pytest.mark.postgres
async def test_a_postgres_ledger_from_before_running_totals_is_migrated(postgres_dsn: str) -> None:
    """Rows written under schema version 1 are in the totals after `migrate()`, and new rows add to them."""
    import asyncpg

    from relaychain.agents.stores.connections import apply_migrations
    from relaychain.agents.stores.ledger import POSTGRES_LEDGER_MIGRATIONS

    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = postgres_dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        await apply_migrations(pool, "cost_ledger", POSTGRES_LEDGER_MIGRATIONS[:1])
        await pool.execute(
            "INSERT INTO relaychain_usage VALUES ('e1', 'shop', 'gpt-4o', '2026-03-14', 'USD', 'generate', 10, 5,"
            " 1, 0.5, 1.0, '2026-03-14T12:00:00+00:00')"
        )
        await pool.close()
        ledger = PostgresLedger(dsn)
        assert await ledger.migrate() == len(POSTGRES_LEDGER_MIGRATIONS) - 1
        assert await ledger.spent("shop", "gpt-4o", DAY.date()) == Decimal("1.5")
        await ledger.record(usage("shop", input_cost="1", output_cost="0"))
        [row] = await rows_of(ledger, "shop")
        assert (row.calls, row.input_tokens, row.cost) == (2, 1010, Decimal("2.5"))
        await ledger.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_cached_and_reasoning_tokens_are_totalled_apart(open_ledger: LedgerFactory) -> None:
    from relaychain.agents.tokens.pricing import priced_usage
    from relaychain.schemas.config import Price

    ledger = await open_ledger()
    shop = business()
    rate = Price(
        input_per_million=Decimal("2.50"), cached_input_per_million=Decimal("1.25"), output_per_million=Decimal("10")
    )
    for _ in range(2):
        step = priced_usage(
            step="generate",
            model="gpt-4o",
            price_per_million=rate,
            input_tokens=1_000,
            output_tokens=300,
            cached_input_tokens=800,
            reasoning_tokens=200,
        )
        await ledger.record(Usage(business=shop, created_at=DAY, usage=step))
    [row] = await rows_of(ledger, shop)
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens) == (
        2000,
        1600,
        600,
        400,
    )
    assert row.input_cost == Decimal("0.00300000") and row.output_cost == Decimal("0.00600000")


async def test_each_row_keeps_the_price_it_was_billed_at(tmp_path: Path) -> None:
    import sqlite3

    from relaychain.agents.tokens.pricing import priced_usage
    from relaychain.schemas.config import Price

    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    old = Price(input_per_million=Decimal("2.50"), output_per_million=Decimal("10.00"))
    new = Price(input_per_million=Decimal("2.00"), output_per_million=Decimal("8.00"), effective_from=date(2026, 3, 15))
    for rate, at in ((old, DAY), (new, DAY + timedelta(days=1))):
        step = priced_usage(
            step="generate", model="gpt-4o", price_per_million=rate, input_tokens=1_000_000, output_tokens=0
        )
        await ledger.record(Usage(business="shop", created_at=at, usage=step))
    await ledger.close()
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT day, input_per_million, output_per_million, price_effective_from, input_cost_e8 FROM usage_events ORDER BY day"
        ).fetchall()
    assert rows == [
        ("2026-03-14", "2.50", "10.00", None, 250_000_000),
        ("2026-03-15", "2.00", "8.00", "2026-03-15", 200_000_000),
    ]


async def test_tenant_totals_count_each_event_once_and_leave_out_usage_without_a_tenant(
    open_ledger: LedgerFactory,
) -> None:
    """The gateway's tenant rides on the usage event; `costs --by tenant` and the tenant budget read these."""
    first, restarted = await open_ledger(), await open_ledger()
    shop, tenant = business(), f"tenant-{uuid.uuid4().hex[:8]}"
    billed = [usage(shop, input_cost="0.1", output_cost="0.01").model_copy(update={"tenant": tenant}) for _ in range(4)]
    await first.record(usage(shop, input_cost="5", output_cost="0"))  # no tenant: not in the tenant totals
    await asyncio.gather(*(first.record(e) for e in billed), *(restarted.record(e) for e in billed))
    assert await restarted.tenant_spent(tenant, DAY.date()) == {"USD": Decimal("0.44")}
    assert await restarted.tenant_spent(tenant, DAY.date() - timedelta(days=1)) == {}
    [row] = [r for r in await first.tenant_totals(since=DAY.date()) if r.tenant == tenant]
    assert (row.calls, row.input_tokens, row.output_tokens, row.cost) == (4, 4000, 400, Decimal("0.44"))
