"""`relaychain asyncapi`: an AsyncAPI 3.0 document that validates against the official schema, offline."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from relaychain import topology
from relaychain.asyncapi import asyncapi_document
from relaychain.cli import main
from relaychain.schemas import PUBLIC_EVENTS
from relaychain.settings import load_settings

SPEC = Path(__file__).parent / "asyncapi" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SPEC.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _resolve(document: dict, ref: str) -> dict:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_document_is_valid_asyncapi_3(validator: jsonschema.protocols.Validator) -> None:
    document = asyncapi_document(load_settings())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]]
    assert document["asyncapi"] == "3.0.0"


def test_the_validator_catches_a_broken_document(validator: jsonschema.protocols.Validator) -> None:
    """The offline schema is strict enough to be worth passing."""
    document = asyncapi_document(load_settings())
    document["operations"]["router.receive.requests"]["action"] = "consume"
    assert not validator.is_valid(document)


def test_every_topic_message_and_agent_is_described() -> None:
    document = asyncapi_document(load_settings())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert set(topology.ALL_TOPICS) <= addresses
    assert set(document["components"]["messages"]) == {e.model_fields["type"].default for e in PUBLIC_EVENTS}
    for ref_holder in [*document["operations"].values()]:
        _resolve(document, ref_holder["channel"]["$ref"])
        for message in ref_holder["messages"]:
            _resolve(document, message["$ref"])
    receives = {
        (op["tags"][0]["name"], _resolve(document, op["channel"]["$ref"])["address"])
        for op in document["operations"].values()
        if op["action"] == "receive"
    }
    for agent, inboxes in topology.AGENT_INBOXES.items():
        assert {(agent, topic) for topic in inboxes} <= receives
    formatter_sends = document["operations"]["formatter.send.responses"]["messages"]
    assert {m["$ref"].rsplit("/", 1)[1] for m in formatter_sends} == {"response", "error", "cancelled"}
    job = document["components"]["messages"]["job"]
    assert job["bindings"]["kafka"]["key"]["type"] == "string"
    assert job["headers"]["properties"]["event-type"]["const"] == "job"
    # Payload refs resolve into components/schemas (nested models such as ChatMessage).
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        _resolve(document, ref)


def test_a_custom_route_is_a_channel_carrying_jobs(tmp_path: Path) -> None:
    settings = load_settings().model_copy(
        update={"runtime": load_settings().runtime.model_copy(update={"routes": {"sentiment": "relaychain.sentiment"}})}
    )
    document = asyncapi_document(settings)
    assert document["channels"]["sentiment"]["address"] == "relaychain.sentiment"
    assert list(document["channels"]["sentiment"]["messages"]) == ["job"]


def test_the_command_writes_json_or_yaml(tmp_path: Path, validator: jsonschema.protocols.Validator) -> None:
    runner = CliRunner()
    printed = runner.invoke(main, ["asyncapi"])
    assert printed.exit_code == 0, printed.output
    assert validator.is_valid(json.loads(printed.output))
    target = tmp_path / "asyncapi.yaml"
    written = runner.invoke(main, ["asyncapi", "--output", str(target)])
    assert written.exit_code == 0, written.output
    assert validator.is_valid(yaml.safe_load(target.read_text(encoding="utf-8")))


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: {}\nbusinesses: {}\noutput_schemas: {}\nbus: [not, a, url]\n", encoding="utf-8")
    monkeypatch.setenv("RELAYCHAIN_CONFIG", str(config))
    result = CliRunner().invoke(main, ["asyncapi"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
