"""What `relaychain run` prints: the JSON result, tokens and cost per step, and the trace tree."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import click

from relaychain.observability.jsonl import read_spans
from relaychain.schemas.envelope import Error, Event
from relaychain.schemas.events import Blocked, Response
from relaychain.settings import Settings
from relaychain.trace_view import render_tree, spans_of_request


def print_answer(answer: Event, settings: Settings, *, json_only: bool = False) -> None:
    from relaychain.cli import dump_json

    if json_only:
        click.echo(answer.model_dump_json(indent=2))
        return
    if isinstance(answer, Response):
        click.secho(f"== {answer.business} on {answer.model} (request {answer.request_id})", bold=True)
        click.echo(dump_json(answer.output))
        _print_usage(answer)
    elif isinstance(answer, Blocked):
        click.secho(
            f"== blocked at {answer.stage} moderation: categories {', '.join(answer.categories)}",
            fg="yellow",
            bold=True,
        )
    elif isinstance(answer, Error):
        where = f"{answer.agent} at {answer.step}" if answer.step else answer.agent
        click.secho(f"== error {answer.code} from {where}: {answer.message}", fg="red", bold=True)
        if answer.details:
            click.echo(dump_json(answer.details))
    path = settings.observability.jsonl_path or settings.data_dir / "traces.jsonl"
    spans = spans_of_request(read_spans(path), answer.request_id)
    if spans:
        click.secho("\n== trace", bold=True)
        click.echo(render_tree(spans))
        click.echo(f"(relaychain trace {answer.request_id} shows it again)")


def _print_usage(answer: Response) -> None:
    click.secho("\n== tokens and cost per step", bold=True)
    click.echo(f"{'step':<22}{'model':<16}{'input':>8}{'output':>8}{'cost':>16}")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for usage in answer.usage:
        click.echo(
            f"{usage.step:<22}{usage.model:<16}{usage.input_tokens:>8}{usage.output_tokens:>8}{usage.cost:>12.8f} {usage.currency}"
        )
        totals[usage.currency] += usage.cost
    for currency, amount in totals.items():
        click.echo(f"{'total':<22}{'':<16}{'':>8}{'':>8}{amount:>12.8f} {currency}")
