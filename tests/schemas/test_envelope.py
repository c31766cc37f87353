"""`Event.advance` and `Event.reply` validate what they change, in the agent that makes the mistake; ids are unique."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pytest
from pydantic import PrivateAttr, ValidationError

from relaychain.schemas import Error, Event, Job, Request, StepUsage, Usage
from relaychain.schemas.envelope import new_id


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


def test_copy_with_is_model_copy_for_values_already_valid() -> None:
    job = _job()
    copied = job.copy_with(id="other", outputs={"generate": "text"})
    expected = job.model_copy(update={"id": "other", "outputs": {"generate": "text"}})
    assert copied == expected and type(copied) is Job
    assert copied.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    assert job.id != "other" and job.outputs == {}
    with pytest.raises(ValidationError):
        copied.id = "frozen"  # type: ignore[misc]


class _WithPrivate(Event):
    type: Literal["with_private"] = "with_private"
    _seen: int = PrivateAttr(default=0)


def test_copy_with_keeps_what_pydantic_copies_for_models_with_private_fields() -> None:
    event = _WithPrivate()
    event._seen = 3
    copied = event.copy_with(business="b")
    assert copied._seen == 3 and copied.business == "b"


def test_reply_keeps_the_correlation_and_validates_the_fields() -> None:
    job = _job()
    error = job.reply(Error, code="unknown_step", message="m", agent="a")
    assert (error.request_id, error.conversation_id, error.business) == (job.request_id, "c1", "b")
    with pytest.raises(TypeError, match="business"):
        job.reply(Error, code="x", message="m", agent="a", business="other")
    with pytest.raises(ValidationError):
        job.reply(Usage, usage={"step": "generate"})


def test_new_ids_are_distinct_version_4_uuids_across_reads_and_threads() -> None:
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: new_id(), range(4 * 300)))
    assert len(set(ids)) == len(ids), "more ids than one read of random bytes holds, from four threads"
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 and u.hex == i for u, i in zip(parsed, ids, strict=True))


def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    new_id()  # the parent has random bytes buffered
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, "".join(new_id() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        from_child = pipe.read().decode()
    parent = [new_id() for _ in range(8)]
    assert len(from_child) == 8 * 32
    assert not {from_child[i : i + 32] for i in range(0, len(from_child), 32)} & set(parent)
