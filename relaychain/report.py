"""What `relaychain run` prints: the JSON result, tokens and cost per step, and the trace tree."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import click
import orjson

from relaychain.commands.boundary import EXIT_FAILED, EXIT_OK
from relaychain.observability.jsonl import read_spans
from relaychain.output import dump_json, money
from relaychain.schemas.envelope import Error, Event
from relaychain.schemas.events import Blocked, Response
from relaychain.settings import Settings
from relaychain.trace_view import render_tree, spans_of_request


def exit_code_of(answer: Event) -> int:
    """0 for a response; 1 for an `Error` and for `Blocked`, which answers but produced no output."""
    return EXIT_OK if isinstance(answer, Response) else EXIT_FAILED


def problem_line(answer: Error | Blocked) -> str:
    """The one stderr line of an answer that is not a response."""
    if isinstance(answer, Blocked):
        return f"blocked at {answer.stage} moderation: categories {', '.join(answer.categories)}"
    where = f"{answer.agent} at {answer.step}" if answer.step else answer.agent
    details = f" {orjson.dumps(answer.details, default=str).decode()}" if answer.details else ""
    return f"error {answer.code} from {where}: {answer.message}{details}"


def print_answer(answer: Event, settings: Settings, *, json_only: bool = False) -> None:
    """The answer on stdout (and, when it is not a response, its one line on stderr), then its trace."""
    if isinstance(answer, Error | Blocked):
        click.secho(problem_line(answer), err=True, fg="red" if isinstance(answer, Error) else "yellow")
    if json_only:
        click.echo(answer.model_dump_json(indent=2))
        return
    if isinstance(answer, Response):
        click.secho(f"== {answer.business} on {answer.model} (request {answer.request_id})", bold=True)
        click.echo(dump_json(answer.output))
        _print_usage(answer)
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
            f"{usage.step:<22}{usage.model:<16}{usage.input_tokens:>8}{usage.output_tokens:>8}"
            f"{money(usage.cost, usage.currency):>16}"
        )
        totals[usage.currency] += usage.cost
    for currency, amount in totals.items():
        click.echo(f"{'total':<22}{'':<16}{'':>8}{'':>8}{money(amount, currency):>16}")
