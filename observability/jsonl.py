"""Spans as one JSON object per line in a file: the embedded default.

`relaychain trace REQUEST_ID` reads it back; anything that reads JSON lines
(jq, a notebook) can too. `JsonLinesSpanProcessor` is what relaychain
installs; `JsonLinesSpanExporter` is the same format for a processor of the
user's choice. A line is a span's record (`hop_span.span_record`) as JSON.
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

from relaychain.observability.hop_span import span_record

log = logging.getLogger(__name__)


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
    a microsecond of orjson, so it is made at `on_end` and appended to one
    buffer; the thread only writes the buffer, which releases the GIL. (A
    list of lines kept every line alive until the write, each a fresh
    allocation of ~500 bytes, and freed them all from the writer's thread.)
    At most `max_pending` lines wait; beyond that spans are dropped and
    counted (logged once per flush), as the SDK's queue does.
    """

    def __init__(self, path: Path, *, flush_interval_s: float = 0.5, max_pending: int = 100_000) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._pending = bytearray()
        self._pending_lines = 0
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
        # `span_line`, without its call.
        line = orjson.dumps(span_record(span), default=str, option=orjson.OPT_APPEND_NEWLINE)
        lock = self._lock
        lock.acquire()  # not `with`: its __enter__/__exit__ calls cost as much as the rest of this block
        try:
            if self._pending_lines >= self._max_pending:
                self._dropped += 1
                return
            self._pending += line
            self._pending_lines += 1
        finally:
            lock.release()

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
                pending, count, self._pending, self._pending_lines = self._pending, self._pending_lines, bytearray(), 0
                dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("%d spans were dropped: more than %d waited to be written", dropped, self._max_pending)
            if not pending:
                return
            try:
                with self.path.open("ab") as out:
                    out.write(pending)
            except OSError as exc:
                log.error("could not write %d spans to %s: %s", count, self.path, exc)


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open("rb") as source:
        return [orjson.loads(line) for line in source if line.strip()]
