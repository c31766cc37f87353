"""`Event.advance` and `Event.reply` validate what they change, in the agent that makes the mistake."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from relaychain.schemas import Error, Job, Request, StepUsage, Usage


def _job() -> Job:
    request = Request(business="b", input="x", conversation_id="c1")
    return request.reply(Job, request=request, model="m", slip=("generate", "format"))


def test_advance_rejects_a_misspelt_field() -> None:
    with pytest.raises(TypeError, match="histroy"):
        _job().advance("generator", histroy=())


@pytest.mark.parametrize(
    "updates",
    [{"outputs": {"generate": 1}}, {"attempt": -1}, {"usage": [{"step": "generate"}]}, {"model": None}],
)
def test_advance_rejects_a_value_of_the_wrong_type(updates: dict) -> None:
    with pytest.raises(ValidationError):
        _job().advance("generator", **updates)


@pytest.mark.parametrize("field", ["slip", "results", "id", "type"])
def test_advance_leaves_the_slip_and_identity_to_the_runtime(field: str) -> None:
    job = _job()
    with pytest.raises(TypeError, match=field):
        job.advance("generator", **{field: getattr(job, field)})


def test_advance_coerces_like_the_constructor() -> None:
    usage = {"step": "generate", "model": "m", "input_tokens": 3, "output_tokens": 2}
    done = _job().advance("generator", usage=[usage], outputs={"generate": "text"})
    assert done.usage == (StepUsage(**usage),) and done.outputs == {"generate": "text"}
    assert done.slip == ("format",) and done.results[-1].agent == "generator"


def test_reply_keeps_the_correlation_and_validates_the_fields() -> None:
    job = _job()
    error = job.reply(Error, code="unknown_step", message="m", agent="a")
    assert (error.request_id, error.conversation_id, error.business) == (job.request_id, "c1", "b")
    with pytest.raises(TypeError, match="business"):
        job.reply(Error, code="x", message="m", agent="a", business="other")
    with pytest.raises(ValidationError):
        job.reply(Usage, usage={"step": "generate"})
