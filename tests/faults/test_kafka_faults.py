"""Faults outside the agents' handlers, on the real broker with seven worker processes under load.

Every scenario publishes `REQUESTS` requests (500 by default) across three
businesses to seven `relaychain worker` processes whose model is an
OpenAI-compatible server taking `MODEL_DELAY_S` per call, injects one fault
while the load runs, and then checks what the issue asks: every request
answered once, every model job billed once and paid once, every group's
commit point at the end of its topics. Each prints one line (see conftest).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable

import pytest

from relaychain import topology
from tests.faults.rig import REQUESTS, Outcome, Rig, readyz
from tests.support.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.faults, pytest.mark.timeout(600)]

ANSWER_TIMEOUT_S = 240
JOURNAL_WINDOW_S = {"sqlite": 0.5, "postgres": 1.5}
"""Longest time between the provider's answer and a SIGKILL for which a re-payment is accepted: the answer
was on its way to, or in, a generator whose event loop had not yet journalled it (a loaded 2-core machine;
PostgreSQL adds its round trips)."""


async def run_load(rig: Rig, fault: Callable[[], object], *, at_fraction: float = 1 / 3) -> float:
    """Publish the load, run `fault` once a fraction of the model jobs are served, wait for the answers."""
    requests = rig.requests(REQUESTS)
    started = time.monotonic()
    await rig.publish(requests)
    await eventually(lambda: rig.model_calls() >= len(requests) * at_fraction, timeout=ANSWER_TIMEOUT_S)
    outcome = fault()
    if asyncio.iscoroutine(outcome):
        await outcome
    await rig.wait_answered(requests, timeout=ANSWER_TIMEOUT_S)
    return time.monotonic() - started


async def assert_drained(rig: Rig) -> None:
    """Every agent group has committed everything on its inbox topics."""
    lag: dict[str, int] = {}

    async def measure() -> None:
        nonlocal lag
        lag = await rig.consumer_lag()

    deadline = time.monotonic() + 30
    await measure()
    while any(lag.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        await measure()
    assert not any(lag.values()), f"consumer lag left: {lag}"


def assert_clean(outcome: Outcome) -> None:
    assert outcome.lost == 0, outcome.line()
    assert outcome.duplicated == 0, outcome.line()
    assert outcome.errors == 0, outcome.line()
    assert outcome.double_billed == 0 and outcome.unbilled == 0, outcome.line()
    assert outcome.double_paid == 0, outcome.line()


def kill_generator(rig: Rig, generation: list[int], kills: list[float]) -> Callable[[], object]:
    async def kill() -> None:
        kills.append(time.monotonic())
        rig.worker(f"generator-{generation[0]}" if generation[0] > 1 else "generator").kill()
        generation[0] += 1
        replacement = rig.pool.start("generator", name=f"generator-{generation[0]}")
        await asyncio.to_thread(rig.pool.wait_running, [replacement])

    return kill


async def sigkill_generator_twice(
    rig: Rig, scenario: str, record: Callable[[Outcome], None], rows: Callable[[], int], window_s: float
) -> None:
    await rig.start_workers()
    requests = rig.requests(REQUESTS)
    generation = [1]
    kills: list[float] = []
    started = time.monotonic()
    await rig.publish(requests)
    for fraction in (0.25, 0.6):
        await eventually(lambda f=fraction: rig.model_calls() >= len(requests) * f, timeout=ANSWER_TIMEOUT_S)
        await kill_generator(rig, generation, kills)()
    await rig.wait_answered(requests, timeout=ANSWER_TIMEOUT_S)
    seconds = time.monotonic() - started
    billed = await rig.wait_billed(len(requests), rows=rows)
    repaid = rig.repaid_after(kills)
    outcome = rig.outcome(
        scenario,
        seconds,
        ledger_rows=billed,
        notes=[
            f"{rig.model_attempts() - rig.model_calls()} calls abandoned by the killed generators",
            f"re-paid calls were answered {max(repaid, default=0) * 1000:.0f} ms or less before a kill",
        ],
    )
    record(outcome)
    assert outcome.lost == 0 and outcome.duplicated == 0 and outcome.errors == 0, outcome.line()
    assert outcome.double_billed == 0 and outcome.unbilled == 0, outcome.line()
    # Paid once, except for answers the provider delivered in the last moment before SIGKILL, before the
    # journal could record them: no journal closes that window without an idempotency key at the provider.
    assert len(repaid) == outcome.double_paid, (repaid, outcome.line())
    assert all(gap <= window_s for gap in repaid), (repaid, rig.repaid_detail(kills), outcome.line())
    await assert_drained(rig)


async def test_generator_sigkilled_twice_during_load(rig_factory, record) -> None:
    rig = rig_factory()
    await sigkill_generator_twice(rig, "SIGKILL generator x2", record, rig.ledger_rows, JOURNAL_WINDOW_S["sqlite"])


@pytest.mark.postgres
async def test_generator_sigkilled_twice_with_postgres_stores(rig_factory, record, postgres_database: str) -> None:
    """Ledger, conversation memory and completion journal in PostgreSQL: the same guarantees."""
    from tests.faults.postgres import ledger_rows

    rig = rig_factory(RELAYCHAIN_POSTGRES_DSN=postgres_database)
    await sigkill_generator_twice(
        rig,
        "SIGKILL generator x2, stores on PostgreSQL",
        record,
        lambda: ledger_rows(postgres_database),
        JOURNAL_WINDOW_S["postgres"],
    )


async def test_broker_paused_for_ten_seconds(rig_factory, record) -> None:
    rig = rig_factory()
    await rig.start_workers()

    async def pause() -> None:
        rig.pause_broker()
        try:
            await asyncio.sleep(10)  # the fault's length, not a wait for an outcome
        finally:
            rig.resume_broker()

    seconds = await run_load(rig, pause)
    billed = await rig.wait_billed(REQUESTS)
    outcome = rig.outcome("SIGSTOP broker 10 s", seconds, ledger_rows=billed)
    record(outcome)
    assert_clean(outcome)
    await assert_drained(rig)


async def test_ledger_locked_for_eight_seconds(rig_factory, record) -> None:
    rig = rig_factory()
    await rig.start_workers()
    released = threading.Event()

    def hold_lock() -> None:
        db = sqlite3.connect(rig.data_dir / "ledger.sqlite3", timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN EXCLUSIVE")
            released.wait(8)
            db.execute("COMMIT")
        finally:
            db.close()

    async def lock() -> None:
        await eventually(lambda: (rig.data_dir / "ledger.sqlite3").exists(), timeout=30)
        holder = threading.Thread(target=hold_lock, daemon=True)
        holder.start()
        await asyncio.to_thread(holder.join)

    seconds = await run_load(rig, lock)
    billed = await rig.wait_billed(REQUESTS, timeout=90)
    outcome = rig.outcome("ledger database locked 8 s", seconds, ledger_rows=billed)
    record(outcome)
    assert_clean(outcome)
    await assert_drained(rig)


async def test_ledger_file_deleted_mid_run(rig_factory, record) -> None:
    rig = rig_factory()
    await rig.start_workers()
    ledger = rig.data_dir / "ledger.sqlite3"

    def delete() -> None:
        for suffix in ("", "-wal", "-shm"):
            ledger.with_name(ledger.name + suffix).unlink(missing_ok=True)

    seconds = await run_load(rig, delete, at_fraction=0.5)
    billed = await rig.wait_billed(REQUESTS, timeout=90)
    tokenizer_log = rig.worker("tokenizer").output()
    detected = str(ledger) in tokenizer_log and ("removed" in tokenizer_log or "replaced" in tokenizer_log)
    outcome = rig.outcome(
        "ledger file deleted mid-run",
        seconds,
        ledger_rows=billed,
        notes=["detected and logged" if detected else "NOT logged"],
    )
    record(outcome)
    assert detected, tokenizer_log[-3000:]
    assert_clean(outcome)
    await assert_drained(rig)


async def test_broker_down_twenty_seconds(rig_factory, record) -> None:
    grace_s = 5.0
    rig = rig_factory(RELAYCHAIN_RUNTIME__BROKER_GRACE_S=str(grace_s))
    workers = await rig.start_workers()
    await eventually(lambda: all(readyz(w) == 200 for w in workers), timeout=60)
    first = rig.requests(REQUESTS // 5, tag="before-")
    await rig.publish(first)
    assert await rig.wait_answered(first, timeout=ANSWER_TIMEOUT_S)
    await rig.wait_billed(len(first))
    await rig.close_client()

    rig.broker.stop()
    down_at = time.monotonic()
    await eventually(lambda: all(readyz(w) == 503 for w in workers), timeout=grace_s + 15)
    not_ready_after = time.monotonic() - down_at
    await asyncio.sleep(max(0.0, 20 - (time.monotonic() - down_at)))  # the outage's length
    rig.restart_broker()
    await rig.create_topics()
    up_at = time.monotonic()
    await eventually(lambda: all(readyz(w) == 200 for w in workers), timeout=90)
    ready_after = time.monotonic() - up_at

    rig.start_counting()
    second = rig.requests(REQUESTS, tag="after-")
    started = time.monotonic()
    await rig.publish(second)
    await rig.wait_answered(second, timeout=ANSWER_TIMEOUT_S)
    seconds = time.monotonic() - started
    billed = await rig.wait_billed(REQUESTS)
    outcome = rig.outcome(
        "broker down 20 s",
        seconds,
        ledger_rows=billed,
        notes=[
            f"/readyz 503 {not_ready_after:.1f}s after the broker died (grace {grace_s:g}s)",
            f"200 {ready_after:.1f}s after it came back; no worker restarted",
            "Tansu in memory loses topics and offsets: requests in the broker during the outage are not checked",
        ],
    )
    record(outcome)
    assert all(w.process.poll() is None for w in workers), "a worker exited during the outage"
    assert_clean(outcome)
    await assert_drained(rig)


async def test_oversized_output_and_a_failed_publish(rig_factory, record) -> None:
    """A reply too large for the broker answers `Error` and is dead-lettered; a publish failing once is retried."""
    from tests.faults.injection import FAIL_ONCE_ENV, huge_reply_script

    rig = rig_factory(RELAYCHAIN_RUNTIME__MIDDLEWARES='["tests.faults.injection:FailOncePublish"]')
    os.environ.pop(FAIL_ONCE_ENV, None)
    huge_reply_script(rig.server, after=REQUESTS // 4)
    await rig.start_workers()
    requests = rig.requests(REQUESTS)
    started = time.monotonic()
    await rig.publish(requests)
    await rig.wait_answered(requests, timeout=ANSWER_TIMEOUT_S)
    seconds = time.monotonic() - started
    billed = await rig.wait_billed(REQUESTS)
    # The oversized reply was a model call too: it is paid and billed like the others.
    outcome = rig.outcome(
        "one output too large + one publish failing once", seconds, ledger_rows=billed, model_jobs=REQUESTS
    )
    letters = [e for e in await rig.read_topic(topology.DEADLETTER)]
    reasons = sorted({getattr(letter, "reason", "?") for letter in letters})
    outcome.notes.append(f"dead letters: {len(letters)} {reasons}")
    record(outcome)
    assert outcome.lost == 0 and outcome.duplicated == 0, outcome.line()
    assert outcome.double_billed == 0 and outcome.unbilled == 0 and outcome.double_paid == 0, outcome.line()
    assert outcome.errors == 1, outcome.line()
    [error] = [a for a in rig.answers.last.values() if getattr(a, "code", None)]
    assert error.code == "event_too_large", error
    assert len(letters) == 1 and letters[0].reason == "event_too_large", letters
    await assert_drained(rig)
