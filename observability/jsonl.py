"""A span exporter that appends one JSON object per span to a file: the embedded default.

`relaychain trace REQUEST_ID` reads it back; anything that reads JSON lines
(jq, a notebook) can too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanKind, StatusCode


def span_record(span: ReadableSpan) -> dict[str, Any]:
    # Only a span built by hand lacks a context; an ended SDK span always has one.
    context = span.get_span_context() or INVALID_SPAN_CONTEXT
    parent = span.parent
    status = span.status
    resource = span.resource
    events = span.events
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent is not None else None,
        "kind": _KIND_NAMES[span.kind],
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": _STATUS_NAMES[status.status_code],
        "status_description": status.description,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in events] if events else [],
        "service": resource.attributes.get("service.name") if resource else None,
    }


_KIND_NAMES = {kind: kind.name for kind in SpanKind}
_STATUS_NAMES = {code: code.name for code in StatusCode}


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        payload = b"".join(orjson.dumps(span_record(s), default=str, option=orjson.OPT_APPEND_NEWLINE) for s in spans)
        with self._lock, self.path.open("ab") as out:
            out.write(payload)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open("rb") as source:
        return [orjson.loads(line) for line in source if line.strip()]
