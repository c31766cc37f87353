"""JSON out of model text: code fences, prose around it, near-JSON repaired, truncation refused.

Order: the body of the first code fence if there is one, else the whole
text; in it the first balanced `{...}` (else `[...]`), scanning strings so a
brace inside a string does not count. Strict JSON first; near-JSON (single
quotes, trailing commas, unquoted keys, comments) is repaired with
`json-repair`. An object that never closes, or a generation stopped by the
token limit, is truncated: repairing it would invent an ending, so it is a
failure for the caller to re-ask.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import json_repair

__all__ = ["Extracted", "ExtractionError", "extract_json"]

_FENCE = re.compile(r"```[ \t]*[\w-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_CLOSERS = {"{": "}", "[": "]"}

Reason = Literal["no_json", "truncated", "unparseable"]


class ExtractionError(ValueError):
    """No usable JSON in the text; `reason` is stable, the message is fit to send back to the model."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Extracted:
    value: Any
    repaired: bool


def extract_json(text: str, *, finish_reason: str | None = None) -> Extracted:
    """The first JSON object or array in `text`. `finish_reason="length"` marks a cut-off generation."""
    if finish_reason == "length":
        raise ExtractionError("truncated", "Your answer was cut off by the length limit before the JSON was complete.")
    fence = _FENCE.search(text)
    body = fence.group(1) if fence else text
    if body.lstrip().startswith("{"):
        # The usual answer: one JSON object and nothing else, which is what the bracket scan below would find.
        try:
            whole = json.loads(body)
        except json.JSONDecodeError:
            pass
        else:
            return Extracted(whole, repaired=False)
    start = _first_opening(body)
    if start is None:
        raise ExtractionError("no_json", "Your answer contained no JSON object.")
    end = _balanced_end(body, start)
    if end is None:
        raise ExtractionError("truncated", "Your answer was cut off before the JSON was complete.")
    candidate = body[start:end]
    try:
        return Extracted(json.loads(candidate), repaired=False)
    except json.JSONDecodeError:
        pass
    value = json_repair.repair_json(candidate, return_objects=True, skip_json_loads=True)
    if not isinstance(value, (dict, list)) or not value:
        raise ExtractionError("unparseable", "Your answer's JSON could not be parsed.")
    return Extracted(value, repaired=True)


def _first_opening(text: str) -> int | None:
    """Objects first: a `[1]` footnote in the prose before an object must not win."""
    for opening in ("{", "["):
        index = text.find(opening)
        if index >= 0:
            return index
    return None


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket closing the one at `start`; None if the text ends first.

    Strings in double or single quotes are skipped (single-quoted near-JSON
    is common), with backslash escapes.
    """
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in ('"', "'"):
            quote = char
        elif char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif stack and char == stack[-1]:
            stack.pop()
            if not stack:
                return index + 1
    return None
