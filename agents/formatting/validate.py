"""Output schemas by name: a JSON Schema file or a pydantic model, validated with readable errors.

`AppConfig.output_schemas` maps a name to either a path (relative to the
config directory) of a JSON Schema file, validated with `jsonschema`, or
`module:Model` naming a pydantic model, validated with a `TypeAdapter`.
Errors read like `$.title: at most 30 characters (got 41)`: short, one per
problem, with the JSON path, so they can go back to the model in a re-ask.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import jsonschema
from pydantic import BaseModel, TypeAdapter, ValidationError

from relaychain.schemas.config import AppConfig

__all__ = [
    "JsonSchemaOutput",
    "OutputSchema",
    "PydanticOutput",
    "SchemaRegistry",
    "SchemaViolation",
    "load_output_schema",
]


class SchemaViolation(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class OutputSchema(Protocol):
    name: str

    @property
    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (also what constrained decoding compiles)."""
        ...

    def validate(self, value: Any) -> dict[str, Any]:
        """The validated object, or SchemaViolation listing every problem."""
        ...


class JsonSchemaOutput:
    def __init__(self, name: str, schema: dict[str, Any]) -> None:
        jsonschema.Draft202012Validator.check_schema(schema)
        self.name = name
        self._schema = schema
        self._validator = jsonschema.Draft202012Validator(schema)

    @property
    def json_schema(self) -> dict[str, Any]:
        return self._schema

    def validate(self, value: Any) -> dict[str, Any]:
        errors = sorted(self._validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            raise SchemaViolation([_describe(error) for error in errors])
        if not isinstance(value, dict):
            raise SchemaViolation(["$: expected a JSON object"])
        return value


class PydanticOutput:
    def __init__(self, name: str, model: type[BaseModel]) -> None:
        self.name = name
        self._adapter = TypeAdapter(model)

    @property
    def json_schema(self) -> dict[str, Any]:
        return self._adapter.json_schema()

    def validate(self, value: Any) -> dict[str, Any]:
        try:
            validated = self._adapter.validate_python(value)
        except ValidationError as exc:
            raise SchemaViolation([f"{_path(e['loc'])}: {e['msg']}" for e in exc.errors()]) from exc
        dumped: dict[str, Any] = self._adapter.dump_python(validated, mode="json")
        return dumped


def load_output_schema(name: str, reference: str, base_dir: Path) -> OutputSchema:
    """`reference` is a JSON Schema file path or `module:Model`."""
    module_name, colon, attribute = reference.partition(":")
    if colon and not reference.endswith(".json"):
        model = getattr(importlib.import_module(module_name), attribute)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"output schema {name!r}: {reference} is not a pydantic model")
        return PydanticOutput(name, model)
    path = Path(reference)
    path = path if path.is_absolute() else base_dir / path
    return JsonSchemaOutput(name, json.loads(path.read_text(encoding="utf-8")))


class SchemaRegistry:
    """Every output schema of the config, loaded once at construction (a bad one fails start-up)."""

    def __init__(self, config: AppConfig, base_dir: Path) -> None:
        self._schemas = {name: load_output_schema(name, ref, base_dir) for name, ref in config.output_schemas.items()}

    def __getitem__(self, name: str) -> OutputSchema:
        return self._schemas[name]


def _path(location: Any) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location)


def _describe(error: jsonschema.ValidationError) -> str:
    where = _path(error.absolute_path)
    # A raised ValidationError has both set (the stubs also allow the `unset` placeholder); any JSON value.
    value: Any = error.instance
    limit: Any = error.validator_value
    match error.validator:
        case "maxLength":
            return f"{where}: at most {limit} characters (got {len(value)})"
        case "minLength":
            return f"{where}: at least {limit} characters (got {len(value)})"
        case "maxItems":
            return f"{where}: at most {limit} items (got {len(value)})"
        case "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            return f"{where}: missing required field {missing!r}"
        case "additionalProperties":
            properties = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
            extra = sorted(set(value) - set(properties))
            return f"{where}: unexpected fields {extra}"
        case "enum":
            return f"{where}: must be one of {list(limit)}"
        case "type":
            return f"{where}: expected {limit}, got {_json_type(value)}"
        case _:
            return f"{where}: {error.message}"


def _json_type(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        type(None): "null",
        int: "integer",
        float: "number",
    }.get(type(value), type(value).__name__)
