"""relaychain.Agent: declared types checked at class creation and around `process`; inbox and group defaults."""

from __future__ import annotations

import pytest

from relaychain import Agent, Job, Request, Response
from relaychain.schemas import Event


def test_defaults_come_from_the_name() -> None:
    class Tagger(Agent[Job]):
        name = "tagger"
        consumes = Job
        emits = (Job,)

    assert (Tagger.inbox, Tagger.group, Tagger.step, Tagger.retry) == (
        ("relaychain.tagger",),
        "relaychain.tagger",
        "tagger",
        None,
    )


def test_declarations_are_checked_when_the_class_is_made() -> None:
    class Own(Event):
        type: str = "own"

    with pytest.raises(TypeError, match="consumes"):

        class Reader(Agent[Own]):
            name = "reader"
            consumes = Own
            emits = (Job,)

    with pytest.raises(TypeError, match="emits"):

        class Silent(Agent[Job]):
            name = "silent"
            consumes = Job

    with pytest.raises(TypeError, match="identifier"):

        class Spaced(Agent[Job]):
            name = "two words"
            consumes = Job
            emits = (Job,)


async def test_an_undeclared_output_is_a_bug() -> None:
    class Liar(Agent[Request]):
        name = "liar"
        consumes = Request
        emits = (Job,)

        async def process(self, event: Request) -> Response:
            return event.reply(Response, model="m", output={})

    with pytest.raises(TypeError, match="emitted a Response"):
        await Liar().handle(Request(business="b", input="x"))
