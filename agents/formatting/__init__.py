"""Structured output: JSON extracted from model text, repaired, validated against a schema."""

from relaychain.agents.formatting.assemble import assemble_from_steps
from relaychain.agents.formatting.extract import Extracted, ExtractionError, extract_json
from relaychain.agents.formatting.validate import (
    JsonSchemaOutput,
    OutputSchema,
    PydanticOutput,
    SchemaRegistry,
    SchemaViolation,
    load_output_schema,
)

__all__ = [
    "Extracted",
    "ExtractionError",
    "JsonSchemaOutput",
    "OutputSchema",
    "PydanticOutput",
    "SchemaRegistry",
    "SchemaViolation",
    "assemble_from_steps",
    "extract_json",
    "load_output_schema",
]
