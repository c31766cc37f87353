"""Extraction, repair, truncation and schema validation of model outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from relaychain.agents.formatting import (
    ExtractionError,
    SchemaRegistry,
    SchemaViolation,
    extract_json,
    load_output_schema,
)
from relaychain.settings import load_settings

DEFAULTS = Path(__file__).resolve().parents[2] / "relaychain" / "defaults"


class Push(BaseModel):
    title: str = Field(max_length=30)
    body: str


@pytest.mark.parametrize(
    ("text", "value", "repaired"),
    [
        ('{"title": "Hi", "body": "Sale"}', {"title": "Hi", "body": "Sale"}, False),
        ('```json\n{"title": "Hi", "body": "Sale"}\n```', {"title": "Hi", "body": "Sale"}, False),
        ('Here you go:\n```\n{"title": "Hi", "body": "Sale"}\n```\nEnjoy!', {"title": "Hi", "body": "Sale"}, False),
        ('Sure! {"title": "a {brace}", "body": "x"} Hope this helps.', {"title": "a {brace}", "body": "x"}, False),
        ("{'title': 'Hi', 'body': 'It''s on'}", None, True),
        ("{'title': 'Hi', 'body': 'Sale',}", {"title": "Hi", "body": "Sale"}, True),
        ('{title: "Hi", body: "Sale"}', {"title": "Hi", "body": "Sale"}, True),
        ('{"title": "Don\'t miss", "body": "x"}', {"title": "Don't miss", "body": "x"}, False),
        (' \n{"title": "}{", "body": "[x"}\n', {"title": "}{", "body": "[x"}, False),
        ('{"title": "first"} {"title": "second"}', {"title": "first"}, False),
        ('{"title": "Hi"} and then [1, 2]', {"title": "Hi"}, False),
    ],
)
def test_extracts_and_repairs(text: str, value: object, repaired: bool) -> None:
    extracted = extract_json(text)
    if value is not None:
        assert extracted.value == value
    assert extracted.repaired is repaired


@pytest.mark.parametrize(
    ("text", "finish_reason", "reason"),
    [
        ('{"title": "Hi", "body": "Sale is on un', None, "truncated"),
        ('```json\n{"title": "Hi", "body": ["a", "b"', None, "truncated"),
        ('{"title": "Hi", "body": "Sale"}', "length", "truncated"),
        ("I cannot write that.", None, "no_json"),
    ],
)
def test_refuses_truncated_and_missing_json(text: str, finish_reason: str | None, reason: str) -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_json(text, finish_reason=finish_reason)
    assert caught.value.reason == reason


def test_json_schema_errors_are_readable(tmp_path: Path) -> None:
    schema = load_output_schema("ops_push", "schemas/ops_push.json", DEFAULTS)
    assert schema.validate({"title": "Hi", "body": "Sale"}) == {"title": "Hi", "body": "Sale"}
    with pytest.raises(SchemaViolation) as caught:
        schema.validate({"title": "x" * 41, "body": 3, "extra": 1})
    assert caught.value.errors == [
        "$: unexpected fields ['extra']",
        "$.body: expected string, got integer",
        "$.title: at most 30 characters (got 41)",
    ]
    with pytest.raises(SchemaViolation, match="missing required field 'body'"):
        schema.validate({"title": "Hi"})


def test_pydantic_model_schemas() -> None:
    schema = load_output_schema("push", f"{__name__}:Push", DEFAULTS)
    assert schema.validate({"title": "Hi", "body": "x"}) == {"title": "Hi", "body": "x"}
    assert schema.json_schema["properties"]["title"]["maxLength"] == 30
    with pytest.raises(SchemaViolation) as caught:
        schema.validate({"title": "x" * 31})
    assert [e.split(":")[0] for e in caught.value.errors] == ["$.title", "$.body"]


def test_every_shipped_schema_loads_and_bounds_its_strings() -> None:
    settings = load_settings(DEFAULTS / "config.yaml")
    registry = SchemaRegistry(settings.app, settings.config_dir)
    for name in settings.app.output_schemas:
        schema = registry[name].json_schema
        for prop in schema["properties"].values():
            strings = [prop] if prop["type"] == "string" else [prop["items"]] if prop["type"] == "array" else []
            for spec in strings:
                assert "maxLength" in spec or "enum" in spec, f"{name}: unbounded string"
            if prop["type"] == "array":
                assert "maxItems" in prop


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ops_push", {"title": "春季大促", "body": "全场八折，今晚截止。"}),
        ("personalized_push", {"title": "Hi Ann", "body": "New trail shoes", "user_segment": "runners"}),
        ("weibo_regional", {"region": "成都", "post": "周末去吃火锅", "hashtags": ["成都", "美食"]}),
        ("product_review", {"reply": "Thank you!", "sentiment": "positive"}),
        ("news_comment", {"comment": "Good news for commuters.", "stance": "support"}),
        ("car_blog", {"title": "T", "opening": "o", "middle": "m", "ending": "e", "specs_cited": ["seal.pdf"]}),
    ],
)
def test_shipped_schemas_accept_a_good_answer(name: str, value: dict) -> None:
    settings = load_settings(DEFAULTS / "config.yaml")
    assert SchemaRegistry(settings.app, settings.config_dir)[name].validate(value) == value


def test_wrong_enum_and_too_many_hashtags() -> None:
    registry = SchemaRegistry(load_settings(DEFAULTS / "config.yaml").app, DEFAULTS)
    with pytest.raises(SchemaViolation) as caught:
        registry["weibo_regional"].validate({"region": "成都", "post": "x", "hashtags": ["a", "b", "c", "d"]})
    assert caught.value.errors == ["$.hashtags: at most 3 items (got 4)"]
    with pytest.raises(SchemaViolation, match=r"\$.sentiment: must be one of"):
        registry["product_review"].validate({"reply": "ok", "sentiment": "happy"})
