"""A chain's result object built from its steps' text outputs, the request and the retrieved sources.

Chain steps write prose (the car blog's opening, middle, ending), not JSON,
so the formatter fills the schema's properties, in this order:

1. a property named like a step: that step's output, cleaned (code fences,
   surrounding quotes and a leading `Opening:`-style label removed);
2. an array-of-strings property: the distinct sources of the retrieved
   context (`specs_cited` = the spec sheets the chain was grounded in);
3. a string property named like a request variable: the variable's value;
4. any other string property (the car blog's `title`): a heading line at the
   top of the first step's output (`# ...` or `Title: ...`, removed from that
   output), else the first sentence of the first output, cut at a word
   boundary to the property's maxLength.

The result still goes through validation; a chain whose last step already
answered with a JSON object skips assembly (see the formatter).
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from relaychain.schemas import Job

__all__ = ["assemble_from_steps"]

_HEADING = re.compile(r"^\s*(?:#+\s*|title\s*[:：]\s*)(?P<title>[^\n]+)\n+", re.IGNORECASE)
_FENCE = re.compile(r"^```[\w-]*\n?|\n?```$")
_SENTENCE_END = re.compile(r"[.!?。！？]")


def assemble_from_steps(job: Job, schema: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    outputs = {name: _clean(name, text) for name, text in job.outputs.items()}
    first = next(iter(outputs), None)
    result: dict[str, Any] = {}
    for name, spec in properties.items():
        if name in outputs:
            result[name] = outputs[name]
        elif spec.get("type") == "array" and spec.get("items", {}).get("type") == "string":
            result[name] = _sources(job)
    for name, spec in properties.items():
        if name in result or spec.get("type") != "string":
            continue
        variable = job.request.vars.get(name)
        if isinstance(variable, str):
            result[name] = variable
        elif first is not None:
            result[name], outputs[first] = _title(outputs[first], spec.get("maxLength"))
            if first in result:
                result[first] = outputs[first]
    return result


def _clean(name: str, text: str) -> str:
    text = _FENCE.sub("", text.strip()).strip()
    text = re.sub(rf"^{re.escape(name)}\s*[:：]\s*", "", text, flags=re.IGNORECASE)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“":
        text = text[1:-1].strip()
    return text


def _sources(job: Job) -> list[str]:
    return list(dict.fromkeys(PurePath(chunk.source).name for chunk in job.context))


def _title(text: str, max_length: int | None) -> tuple[str, str]:
    """(title, text without the heading line if the title came from one)."""
    heading = _HEADING.match(text)
    if heading:
        return heading.group("title").strip().strip("*#").strip(), text[heading.end() :]
    end = _SENTENCE_END.search(text)
    sentence = text[: end.start()] if end else text
    if max_length is not None and len(sentence) > max_length:
        cut = sentence[:max_length]
        sentence = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return sentence.strip(), text
