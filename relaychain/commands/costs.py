"""`relaychain costs`: the cost ledger per business x model x day, in each model's currency."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

import click

from relaychain.agents.stores.ledger import LedgerRow
from relaychain.settings import ConfigError, Settings, load_settings
from relaychain.stores import LEDGER_FILE, open_ledger

__all__ = ["costs", "render_table"]

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
def costs(since: datetime | None, postgres_dsn: str | None) -> None:
    """Tokens and cost per business x model x day, input and output apart, totals per currency."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(f"bad config: {exc}") from None
    if not (postgres_dsn or settings.postgres_dsn) and not (settings.data_dir / LEDGER_FILE).exists():
        click.echo(f"no usage recorded yet ({settings.data_dir / LEDGER_FILE} does not exist)")
        return
    rows = asyncio.run(_read(settings, postgres_dsn, since.date() if since else None))
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
            _money(r.input_cost),
            _money(r.output_cost),
            _money(r.cost),
            r.currency,
        )
        for r in rows
    ]
    totals: dict[str, list[Decimal | int]] = defaultdict(lambda: [0, 0, 0, Decimal(0), Decimal(0)])
    for r in rows:
        total = totals[r.currency]
        for i, value in enumerate((r.calls, r.input_tokens, r.output_tokens, r.input_cost, r.output_cost)):
            total[i] += value
    footer = [
        ("total", "", "", str(calls), str(tin), str(tout), _money(cin), _money(cout), _money(cin + cout), currency)
        for currency, (calls, tin, tout, cin, cout) in sorted(totals.items())
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


def _money(amount: Decimal | int) -> str:
    """Fixed point to the ledger's 1e-8, so zero prints as 0.00000000, not 0E-8."""
    return f"{Decimal(amount):.8f}"
