"""The router's budget check and the generator's completion journal, on SQLite, in one run.

    python bench/ledger.py                  # days of 2,000 and 20,000 usage rows
    python bench/ledger.py --rows 1000 5000 --checks 200

Budget check: the day's spend of one business x model, read the way the
router did before (summing the day's usage rows, grouped) and the way it does
now (one row of the running totals the insert keeps), on the same ledger
file, interleaved; the ratio is old / new. The scan grows with the day's
traffic, the lookup does not.

Journal: what paying once adds to a generate step, per job: the look-up that
finds nothing plus the record (first delivery), and the look-up alone (a
redelivered job, which then calls no model). For scale, the ledger's own
insert per usage event is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from relaychain.agents.stores.journal import SqliteJournal
from relaychain.agents.stores.ledger import SqliteLedger
from relaychain.schemas import StepUsage, Usage

DAY = datetime(2026, 3, 14, 12, tzinfo=UTC)
OLD_CHECK = (
    "SELECT business, model, day, currency, sum(input_cost_e8), sum(output_cost_e8) FROM usage_events"
    " WHERE day >= ? GROUP BY business, model, day, currency"
)


def usage(business: str) -> Usage:
    step = StepUsage(step="generate", model="gpt-4o", input_tokens=900, output_tokens=80, input_cost=Decimal("0.002"))
    return Usage(business=business, created_at=DAY, usage=step)


async def budget_check(folder: Path, sizes: list[int], checks: int) -> None:
    ledger = SqliteLedger(folder / "ledger.sqlite3")
    db = await ledger._file.connection()
    recorded = 0
    for size in sizes:
        for index in range(recorded, size):
            await ledger.record(usage(f"shop{index % 6}"))
        recorded = size
        old = new = 0.0
        for _ in range(checks):
            started = time.perf_counter()
            async with db.execute(OLD_CHECK, (DAY.date().isoformat(),)) as cursor:
                rows = await cursor.fetchall()
            old += time.perf_counter() - started
            assert rows
            started = time.perf_counter()
            await ledger.spent("shop1", "gpt-4o", DAY.date())
            new += time.perf_counter() - started
        print(
            f"budget check, day of {size:>6} usage rows: scan {old / checks * 1e3:7.3f} ms,"
            f" running total {new / checks * 1e3:6.3f} ms  ({old / new:5.1f}x)"
        )
    await ledger.close()


async def journal_cost(folder: Path, jobs: int) -> None:
    journal = SqliteJournal(folder / "journal.sqlite3")
    ledger = SqliteLedger(folder / "ledger-insert.sqlite3")
    await journal.get("warm")
    await ledger.totals()
    payload = '{"text": "' + "x" * 400 + '"}'
    started = time.perf_counter()
    for index in range(jobs):
        if await journal.get(f"job{index}/generate") is None:
            await journal.record(f"job{index}/generate", payload)
    first = (time.perf_counter() - started) / jobs
    started = time.perf_counter()
    for index in range(jobs):
        assert await journal.get(f"job{index}/generate") is not None
    replay = (time.perf_counter() - started) / jobs
    started = time.perf_counter()
    for _ in range(jobs):
        await ledger.record(usage("shop"))
    insert = (time.perf_counter() - started) / jobs
    print(
        f"journal per job: first delivery {first * 1e3:.3f} ms, redelivery {replay * 1e3:.3f} ms;"
        f" ledger insert with running total {insert * 1e3:.3f} ms"
    )
    await journal.close()
    await ledger.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        await budget_check(Path(folder), sorted(args.rows), args.checks)
        await journal_cost(Path(folder), args.jobs)


if __name__ == "__main__":
    asyncio.run(main())
