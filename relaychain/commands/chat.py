"""`relaychain chat --business X`: a multi-turn conversation on the embedded defaults.

Every line read from stdin is one `Request` of the same conversation, so a
business with memory (`memory.load` / `memory.save` on its slip) sees the
earlier turns. The answer's JSON output and its tokens are printed after each
line; `/exit` or end of input ends the session. All agents run in this
process (memory bus, local models, SQLite), as for `relaychain run`.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import click

from relaychain.commands.options import parse_vars
from relaychain.output import dump_json, money
from relaychain.schemas.envelope import Error, Event
from relaychain.schemas.events import Blocked, Request, Response
from relaychain.settings import Settings, load_settings

__all__ = ["EXIT_COMMAND", "chat"]

EXIT_COMMAND = "/exit"


@click.command()
@click.option("--business", required=True)
@click.option("--conversation", help="Conversation id: resume an earlier session (a new one by default).")
@click.option("--var", "variables", multiple=True, metavar="K=V", help="Template variable for every turn (repeatable).")
@click.option("--model", help="Model hint; used when the business allows it.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for each answer.")
def chat(
    business: str, conversation: str | None, variables: tuple[str, ...], model: str | None, timeout: float | None
) -> None:
    """Chat with BUSINESS: one request per line of input, one conversation; `/exit` or EOF ends."""
    settings = load_settings()
    config = settings.app.businesses.get(business)
    if config is None:
        raise click.BadParameter(
            f"no business {business!r}; businesses are {', '.join(settings.app.businesses)}", param_hint="--business"
        )
    conversation = conversation or f"chat-{uuid.uuid4().hex[:12]}"
    click.echo(f"conversation {conversation} with {business}; {EXIT_COMMAND} or end of input to leave")
    if config.memory.kind == "none":
        click.echo(f"note: {business} keeps no memory, each line is answered on its own")
    asyncio.run(_session(settings, business, conversation, parse_vars(variables), model, timeout))


async def _session(
    settings: Settings,
    business: str,
    conversation: str,
    variables: dict[str, str],
    model: str | None,
    timeout: float | None,
) -> None:
    from relaychain.embedded import EmbeddedApp

    stdin = sys.stdin
    interactive = stdin.isatty()
    async with EmbeddedApp(settings) as app:
        while True:
            if interactive:
                click.echo("you> ", nl=False)
            # A thread: a blocking read must not stall the agents running on this loop.
            line = await asyncio.to_thread(stdin.readline)
            text = line.strip()
            if not line or text == EXIT_COMMAND:
                return
            if not text:
                continue
            request = Request(business=business, input=text, vars=variables, model=model, conversation_id=conversation)
            _print_turn(await app.ask(request, timeout=timeout))


def _print_turn(answer: Event) -> None:
    if isinstance(answer, Response):
        click.echo(dump_json(answer.output))
        tokens_in = sum(line.input_tokens for line in answer.usage)
        tokens_out = sum(line.output_tokens for line in answer.usage)
        cost = ", ".join(money(line.amount, line.currency) for line in answer.cost) or "0"
        click.secho(f"tokens: {tokens_in} in, {tokens_out} out; cost {cost}", dim=True)
    elif isinstance(answer, Blocked):
        # A blocked turn is not remembered; the conversation goes on without it.
        click.secho(f"blocked at {answer.stage} moderation: {', '.join(answer.categories)}", fg="yellow")
    elif isinstance(answer, Error):
        click.secho(f"error {answer.code} from {answer.agent}: {answer.message}", fg="red")
