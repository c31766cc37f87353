"""`relaychain costs`: the cost ledger per business x model x day, in each model's currency.

Usage the ledger could not take (it was locked, down, ...) waits in the
unbilled spool under the data dir until the tokenizer's next successful
write replays it; while it waits, these totals miss it, and `costs` says so
on stderr. `--replay-unbilled` replays it now (idempotent on event ids).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import click

from relaychain.agents.stores.ledger import LedgerRow, TenantRow
from relaychain.agents.stores.unbilled import DrainReport
from relaychain.agents.tokens.pricing import UnknownExchangeRate, convert
from relaychain.commands.boundary import BadConfig
from relaychain.output import amount, echo_json
from relaychain.settings import Settings, load_settings
from relaychain.stores import LEDGER_FILE, open_ledger, unbilled_spool

__all__ = ["as_document", "costs", "render_table", "render_tenant_table"]

HEADERS = (
    "day",
    "business",
    "model",
    "calls",
    "input tokens",
    "output tokens",
    "input cost",
    "output cost",
    "cost",
    "currency",
)


@click.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC) to show, YYYY-MM-DD.")
@click.option(
    "--postgres", "postgres_dsn", metavar="DSN", help="Read the PostgreSQL ledger (else settings, else SQLite)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print {rows, totals, unbilled} as JSON; amounts are decimal strings."
)
@click.option(
    "--replay-unbilled", is_flag=True, help="First record the usage the ledger could not take (see the warning)."
)
@click.option(
    "--currency",
    metavar="CODE",
    help="Show every amount in this currency, converted by the config's exchange_rates (stored amounts stay as billed).",
)
@click.option(
    "--by",
    type=click.Choice(["business", "tenant"]),
    default="business",
    show_default=True,
    help="Rows per business x model x day, or per gateway tenant (API key) x day, as billed.",
)
def costs(
    since: datetime | None,
    postgres_dsn: str | None,
    as_json: bool,
    replay_unbilled: bool,
    currency: str | None,
    by: str,
) -> None:
    """Tokens and cost per business x model x day (or per tenant x day), totals per currency."""
    settings = load_settings()
    spool = unbilled_spool(settings)
    if replay_unbilled:
        report = asyncio.run(_replay(settings, postgres_dsn))
        click.echo(
            f"replayed unbilled usage: {report.recorded} recorded, {report.already_recorded} already in the ledger"
            + (f", {report.left} still failing" if report.left else ""),
            err=True,
        )
    unbilled = spool.count()
    if unbilled:
        click.echo(
            f"warning: {unbilled} usage event(s) could not be written to the ledger and are not in these totals"
            f" (kept in {spool.path}); run `relaychain costs --replay-unbilled` once the ledger is reachable",
            err=True,
        )
    recorded = bool(postgres_dsn or settings.postgres_dsn) or (settings.data_dir / LEDGER_FILE).exists()
    if by == "tenant":
        since_day = since.date() if since else None
        tenant_rows = asyncio.run(_read_tenants(settings, postgres_dsn, since_day)) if recorded else []
        if as_json:
            echo_json({"rows": [_tenant_row(r) for r in tenant_rows], "unbilled": unbilled})
        else:
            click.echo(render_tenant_table(tenant_rows) if tenant_rows else "no tenant usage recorded")
        return
    rows = asyncio.run(_read(settings, postgres_dsn, since.date() if since else None)) if recorded else []
    if currency:
        rows = in_currency(rows, currency.upper(), settings.app.exchange_rates)
    if as_json:
        echo_json({**as_document(rows), "unbilled": unbilled})
        return
    if not recorded:
        click.echo(f"no usage recorded yet ({settings.data_dir / LEDGER_FILE} does not exist)")
        return
    if not rows:
        click.echo("no usage recorded" + (f" since {since.date()}" if since else ""))
        return
    click.echo(render_table(rows))


async def _read(settings: Settings, postgres_dsn: str | None, since: date | None) -> list[LedgerRow]:
    ledger = await open_ledger(settings, postgres_dsn)
    try:
        return await ledger.totals(since=since)
    finally:
        await ledger.close()


async def _read_tenants(settings: Settings, postgres_dsn: str | None, since: date | None) -> list[TenantRow]:
    ledger = await open_ledger(settings, postgres_dsn)
    try:
        return await ledger.tenant_totals(since=since)
    finally:
        await ledger.close()


def _tenant_row(r: TenantRow) -> dict[str, Any]:
    return {
        "day": r.day.isoformat(),
        "tenant": r.tenant,
        "calls": r.calls,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cost": amount(r.cost),
        "currency": r.currency,
    }


def render_tenant_table(rows: list[TenantRow]) -> str:
    """One line per tenant x day x currency (usage that came in without an API key has no tenant)."""
    headers = ("day", "tenant", "calls", "input tokens", "output tokens", "cost", "currency")
    body = [tuple(str(v) for v in _tenant_row(r).values()) for r in rows]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if 2 <= i <= 5 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in [headers, *body]
    )


async def _replay(settings: Settings, postgres_dsn: str | None) -> DrainReport:
    ledger = await open_ledger(settings, postgres_dsn)
    try:
        return await unbilled_spool(settings).drain(ledger.record)
    finally:
        await ledger.close()


def in_currency(rows: list[LedgerRow], target: str, rates: Mapping[str, Decimal]) -> list[LedgerRow]:
    """`rows` with their amounts converted to `target`; a missing rate is a config error naming the pair."""
    try:
        return [
            replace(
                row,
                input_cost=convert(row.input_cost, row.currency, target, rates),
                output_cost=convert(row.output_cost, row.currency, target, rates),
                currency=target,
            )
            for row in rows
        ]
    except UnknownExchangeRate as exc:
        raise BadConfig(f"{exc}: add `exchange_rates: {{{exc.pair}: <rate>}}` to the config") from None


def as_document(rows: list[LedgerRow]) -> dict[str, Any]:
    """What `--json` prints: the rows, and one total per currency (currencies are never added together)."""
    return {
        "rows": [
            {
                "day": r.day.isoformat(),
                "business": r.business,
                "model": r.model,
                "calls": r.calls,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "input_cost": amount(r.input_cost),
                "output_cost": amount(r.output_cost),
                "cost": amount(r.cost),
                "currency": r.currency,
            }
            for r in rows
        ],
        "totals": [
            {
                "currency": currency,
                "calls": calls,
                "input_tokens": tin,
                "output_tokens": tout,
                "input_cost": amount(cin),
                "output_cost": amount(cout),
                "cost": amount(cin + cout),
            }
            for currency, (calls, tin, tout, cin, cout) in _totals(rows)
        ],
    }


def _totals(rows: list[LedgerRow]) -> list[tuple[str, list[Any]]]:
    """Per currency: calls, input tokens, output tokens, input cost, output cost."""
    totals: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, Decimal(0), Decimal(0)])
    for r in rows:
        total = totals[r.currency]
        for i, value in enumerate((r.calls, r.input_tokens, r.output_tokens, r.input_cost, r.output_cost)):
            total[i] += value
    return sorted(totals.items())


def render_table(rows: list[LedgerRow]) -> str:
    """An aligned text table, then one total line per currency (currencies are never added together)."""
    body = [
        (
            r.day.isoformat(),
            r.business,
            r.model,
            str(r.calls),
            str(r.input_tokens),
            str(r.output_tokens),
            amount(r.input_cost),
            amount(r.output_cost),
            amount(r.cost),
            r.currency,
        )
        for r in rows
    ]
    footer = [
        ("total", "", "", str(calls), str(tin), str(tout), amount(cin), amount(cout), amount(cin + cout), currency)
        for currency, (calls, tin, tout, cin, cout) in _totals(rows)
    ]
    table = [HEADERS, *body, *footer]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    numeric = set(range(3, 9))

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(HEADERS), rule, *(line(b) for b in body), rule, *(line(f) for f in footer)])
