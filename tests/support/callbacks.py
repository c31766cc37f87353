"""A user callback as config names it (`observability.span_processors: [tests.support.callbacks:Recorder]`)."""

from __future__ import annotations

from typing import ClassVar

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor


class Recorder(SpanProcessor):
    """Keeps the names of ended spans, class-wide, so a test can read what the configured instance saw."""

    ended: ClassVar[list[str]] = []

    def on_end(self, span: ReadableSpan) -> None:
        Recorder.ended.append(span.name)
