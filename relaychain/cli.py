"""The `relaychain` command. Thin: parse, load settings, call the module that does the work."""

# ruff: noqa: E402  (the environment below is set before the imports that load numpy)

from __future__ import annotations

import os

# OpenBLAS starts its threads when numpy loads it (through the agents imported below), and they spin-wait for work
# for 2^28 cycles before they sleep: 0.1 s of CPU on every start of the command, taken from the core the other
# start-up threads need. At 2^4 they sleep at once; waking one for a large product costs microseconds. A value the
# user set is kept; OpenBLAS reads it once, when it loads.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relaychain import topology
from relaychain.agents.llm.threaded import wait_briefly
from relaychain.commands.boundary import EXIT_FAILED, BoundaryGroup, Failed
from relaychain.commands.options import parse_vars
from relaychain.process_exit import run_and_leave
from relaychain.settings import Settings, load_settings

if TYPE_CHECKING:
    from relaychain.publisher import PublishSummary
    from relaychain.schemas.envelope import Event


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


@click.group(cls=BoundaryGroup)
@click.version_option(package_name="relaychain", message="%(prog)s %(version)s")
@click.option(
    "--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="Config YAML (RELAYCHAIN_CONFIG)."
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Data directory (RELAYCHAIN_DATA_DIR)."
)
@click.option("-v", "--verbose", count=True, help="Tracebacks of failures, and more logging (-v info, -vv debug).")
def main(config: Path | None, data_dir: Path | None, verbose: int) -> None:
    """relaychain: event-driven LLM agents on an embedded bus or Kafka."""
    # Before any command imports torch or llama.cpp: their OpenMP runtime reads the wait policy once, at load.
    wait_briefly()
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # A one-shot command reports an unreachable broker in one line; aiokafka would add its own per retry.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if config is not None:
        os.environ["RELAYCHAIN_CONFIG"] = str(config.resolve())
    if data_dir is not None:
        os.environ["RELAYCHAIN_DATA_DIR"] = str(data_dir.resolve())


@main.command()
@click.argument("agents", nargs=-1, required=True)
@click.option("--bus", help="memory:// or kafka://host:port (RELAYCHAIN_BUS).")
@click.option("--inbox", "inboxes", multiple=True, help="Topic(s) for a `module:Class` agent.")
@click.option("--group", help="Consumer group for a `module:Class` agent (relaychain.<name> by default).")
def worker(agents: tuple[str, ...], bus: str | None, inboxes: tuple[str, ...], group: str | None) -> None:
    """Run AGENT(s) as a long-lived worker with health probes; SIGTERM drains and exits 0.

    AGENT is one of the built-in agents (router, moderator, memory, retriever,
    tokenizer, generator, formatter) or your own as `module:Class` with --inbox.
    """
    from relaychain.worker import run_worker

    custom = [a for a in agents if ":" in a]
    unknown = [a for a in agents if ":" not in a and a not in topology.AGENTS]
    if unknown:
        raise click.BadParameter(f"unknown agent(s) {unknown}; built-in agents are {', '.join(topology.AGENTS)}")
    if custom and (len(agents) > 1 or not inboxes):
        raise click.BadParameter("a `module:Class` agent runs alone and needs --inbox")
    # A worker's log is its output: the broker client's errors belong in it.
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    asyncio.run(run_worker(_settings(bus=bus), list(agents), inboxes=list(inboxes), group=group))


@main.command()
@click.option("--business", required=True)
@click.option("--input", "text", required=True, help="The request's input text.")
@click.option("--var", "variables", multiple=True, metavar="K=V", help="Template variable (repeatable).")
@click.option("--model", help="Model hint; used when the business allows it.")
@click.option("--conversation", help="Conversation id, for businesses with memory.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the answer.")
@click.option("--json", "json_only", is_flag=True, help="Print only the answer event as JSON.")
def run(
    business: str,
    text: str,
    variables: tuple[str, ...],
    model: str | None,
    conversation: str | None,
    timeout: float | None,
    json_only: bool,
) -> None:
    """Run one request through all agents in this process (memory bus, local models, SQLite).

    Exits 0 on a response, 1 on an `Error` or `Blocked` answer (one line on stderr).
    """
    from relaychain.embedded import EmbeddedApp
    from relaychain.report import exit_code_of, print_answer
    from relaychain.schemas.events import Request

    settings = _settings()
    request = Request(
        business=business, input=text, vars=parse_vars(variables), model=model, conversation_id=conversation
    )

    async def go() -> Event:
        async with EmbeddedApp(settings) as app:
            return await app.ask(request, timeout=timeout)

    answer = asyncio.run(go())
    print_answer(answer, settings, json_only=json_only)
    sys.exit(exit_code_of(answer))


@main.command()
@click.argument("file", type=click.File("rb"))
@click.option("--bus", help="kafka://host:port (RELAYCHAIN_BUS).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for each answer.")
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Requests awaiting an answer at once; reading pauses at this many.",
)
def publish(file: Any, bus: str | None, timeout: float, max_in_flight: int) -> None:
    """Publish request events from a JSON-lines FILE (`-` for stdin), printing each answer as it arrives.

    Answers go to stdout, one JSON line each; bad lines, timeouts and the
    summary go to stderr. Exits 1 unless every line got a response.
    """
    from relaychain.publisher import Publisher, Retry, connected_client, numbered_lines

    settings = _settings(bus=bus)

    async def go() -> PublishSummary:
        async with connected_client(settings) as client:
            publisher = Publisher(
                client,
                timeout=timeout,
                max_in_flight=max_in_flight,
                retry=Retry.of(settings.runtime),
                on_answer=lambda answer: click.echo(answer.model_dump_json()),
                on_problem=lambda problem: click.echo(problem, err=True),
            )
            return await publisher.publish(numbered_lines(file))

    summary = asyncio.run(go())
    if summary.timeouts and not summary.answered:
        click.echo(f"no request was answered: are the workers running on {settings.bus}?", err=True)
    click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(EXIT_FAILED)


@main.group()
def schemas() -> None:
    """JSON Schema for every event, for publishers in other languages."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def schemas_export(directory: Path) -> None:
    from relaychain.schemas.export import export_json_schemas

    for path in export_json_schemas(directory):
        click.echo(path)


@main.command()
@click.argument("request_id")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), help="JSON-lines trace file.")
@click.option("--json", "as_json", is_flag=True, help="Print the spans as a JSON array instead of a tree.")
def trace(request_id: str, path: Path | None, as_json: bool) -> None:
    """Show one request's spans as a tree with timings, tokens and cost."""
    from relaychain.observability.jsonl import read_spans
    from relaychain.output import echo_json
    from relaychain.trace_view import render_tree, spans_of_request

    settings = _settings()
    spans = spans_of_request(
        read_spans(path or settings.observability.jsonl_path or settings.data_dir / "traces.jsonl"), request_id
    )
    if not spans:
        raise Failed(f"no spans for request {request_id}")
    if as_json:
        echo_json(spans)
    else:
        click.echo(render_tree(spans))


def _register_commands() -> None:
    from relaychain.commands.asyncapi import asyncapi
    from relaychain.commands.chat import chat
    from relaychain.commands.costs import costs
    from relaychain.commands.db import db
    from relaychain.commands.deploy import deploy
    from relaychain.commands.index import index, search
    from relaychain.commands.serve import serve
    from relaychain.commands.tokens import tokens

    for command in (asyncapi, chat, costs, db, deploy, index, search, serve, tokens):
        main.add_command(command)


_register_commands()


def entry() -> None:
    """The console script: `main`, then an exit without the interpreter's teardown (see `process_exit`)."""
    run_and_leave(main)


if __name__ == "__main__":
    entry()
