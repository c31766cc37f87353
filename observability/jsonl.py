"""Spans as one JSON object per line in a file: the embedded default.

`relaychain trace REQUEST_ID` reads it back; anything that reads JSON lines
(jq, a notebook) can too. `JsonLinesSpanProcessor` is what relaychain
installs; `JsonLinesSpanExporter` is the same format for a processor of the
user's choice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanKind, StatusCode

from relaychain.observability.hop_span import HopSpan

log = logging.getLogger(__name__)


def span_record(span: ReadableSpan) -> dict[str, Any]:
    if type(span) is HopSpan:
        # A hop span carries its ids in hex already (as its headers had them).
        trace_hex, span_hex, parent_hex = span.trace_hex, span.span_hex, span.parent_span_hex
    else:
        # Only a span built by hand lacks a context; an ended SDK span always has one.
        context = span.get_span_context() or INVALID_SPAN_CONTEXT
        parent = span.parent
        trace_hex, span_hex = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        parent_hex = f"{parent.span_id:016x}" if parent is not None else None
    status = span.status
    resource = span.resource
    events = span.events
    return {
        "name": span.name,
        "trace_id": trace_hex,
        "span_id": span_hex,
        "parent_span_id": parent_hex,
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


def span_line(span: ReadableSpan) -> bytes:
    return orjson.dumps(span_record(span), default=str, option=orjson.OPT_APPEND_NEWLINE)


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        payload = b"".join(span_line(s) for s in spans)
        with self._lock, self.path.open("ab") as out:
            out.write(payload)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class JsonLinesSpanProcessor(SpanProcessor):
    """Writes ended spans as JSON lines: serialised where they end, written by a thread every `flush_interval_s`.

    The SDK's `BatchSpanProcessor` queues span objects and turns them into
    JSON on its worker thread, which then holds the GIL for the whole batch
    while the event loop waits for it (see bench/bus.py). A span's line is
    a couple of microseconds of orjson, so it is made at `on_end`; the
    thread only joins bytes and writes them, which releases the GIL. At most
    `max_pending` lines wait; beyond that spans are dropped and counted
    (logged once per flush), as the SDK's queue does.
    """

    def __init__(self, path: Path, *, flush_interval_s: float = 0.5, max_pending: int = 100_000) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._pending: list[bytes] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="relaychain-jsonl-spans", daemon=True)
        self._thread.start()

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed:
            return
        line = span_line(span)
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self._dropped += 1
                return
            self._pending.append(line)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self._write()
        return True

    def shutdown(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join()
        self._write()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._write()

    def _write(self) -> None:
        # One writer at a time (the thread, a flush, shutdown), so lines reach the file in the order they ended.
        with self._write_lock:
            with self._lock:
                lines, self._pending = self._pending, []
                dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("%d spans were dropped: more than %d waited to be written", dropped, self._max_pending)
            if not lines:
                return
            try:
                with self.path.open("ab") as out:
                    out.write(b"".join(lines))
            except OSError as exc:
                log.error("could not write %d spans to %s: %s", len(lines), self.path, exc)


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open("rb") as source:
        return [orjson.loads(line) for line in source if line.strip()]
