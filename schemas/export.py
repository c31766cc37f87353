"""JSON Schema files for every event type, so non-Python publishers can validate what they send."""

from __future__ import annotations

from pathlib import Path

import orjson

from relaychain.schemas.envelope import SCHEMA_VERSION
from relaychain.schemas.events import PUBLIC_EVENTS


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type in PUBLIC_EVENTS:
        name = event_type.model_fields["type"].default
        schema = event_type.model_json_schema(mode="validation")
        schema["$id"] = f"https://relaychain.dev/schemas/v{SCHEMA_VERSION}/{name}.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path = directory / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        written.append(path)
    return written
