from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from relaychain.bus.codec import EventCodec, UndecodableMessage
from relaychain.cli import main
from relaychain.schemas import PUBLIC_EVENTS, SCHEMA_VERSION, Job, Request, StepUsage, Usage
from relaychain.schemas.export import export_json_schemas


def test_events_round_trip_through_the_codec() -> None:
    codec = EventCodec(PUBLIC_EVENTS)
    request = Request(business="ops_push", input="hi", vars={"campaign": "x"}, conversation_id="c1")
    job = request.reply(Job, request=request, model="gpt-4o", slip=("generate", "format"))
    usage = job.reply(Usage, usage=StepUsage(step="generate", model="gpt-4o", input_tokens=3, output_tokens=2))
    for event in (request, job, usage):
        assert codec.decode(codec.encode(event)) == event
    assert codec.decode(codec.encode(job, event_id="fixed")).id == "fixed"


def test_advance_moves_the_current_step_to_the_results() -> None:
    request = Request(business="b", input="x")
    job = request.reply(Job, request=request, model="m", slip=("generate", "format"))
    done = job.advance("generator", outputs={"generate": "text"})
    assert done.slip == ("format",) and done.results[-1].step == "generate" and done.outputs == {"generate": "text"}
    assert done.key == request.request_id and done.request_id == request.request_id


def test_requests_need_input_and_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Request(business="b")
    request = Request(business="b", input="x")
    with pytest.raises(ValidationError):
        request.input = "y"  # type: ignore[misc]


def test_a_newer_schema_version_is_refused_not_guessed() -> None:
    raw = json.loads(EventCodec(PUBLIC_EVENTS).encode(Request(business="b", input="x")))
    raw["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(UndecodableMessage) as caught:
        EventCodec(PUBLIC_EVENTS).decode(json.dumps(raw).encode())
    assert caught.value.reason == "schema_too_new" and caught.value.raw == raw


def test_schemas_export_writes_a_json_schema_per_event(tmp_path: Path) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{t.model_fields['type'].default}.schema.json" for t in PUBLIC_EVENTS)
    request_schema = json.loads((tmp_path / "request.schema.json").read_text())
    assert request_schema["properties"]["type"]["const"] == "request"
    assert export_json_schemas(tmp_path)
