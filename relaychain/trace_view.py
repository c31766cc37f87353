"""`relaychain trace REQUEST_ID`: one request's spans as a tree with timings, tokens and cost."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from relaychain.output import money


def spans_of_request(spans: Iterable[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """Every span of the traces that touched this request."""
    spans = list(spans)
    traces = {s["trace_id"] for s in spans if s["attributes"].get("relaychain.request.id") == request_id}
    return [s for s in spans if s["trace_id"] in traces]


def render_tree(spans: list[dict[str, Any]]) -> str:
    if not spans:
        return "(no spans)"
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in by_id else None
        children[parent].append(span)
    start = min(s["start_ns"] for s in spans)
    lines: list[str] = []

    def walk(span: dict[str, Any], prefix: str, last: bool) -> None:
        branch = "" if prefix == "" and not lines else ("└─ " if last else "├─ ")
        lines.append(f"{prefix}{branch}{_describe(span, start)}")
        kids = sorted(children[span["span_id"]], key=lambda s: s["start_ns"])
        for index, kid in enumerate(kids):
            extension = "" if branch == "" else ("   " if last else "│  ")
            walk(kid, prefix + extension, index == len(kids) - 1)

    roots = sorted(children[None], key=lambda s: s["start_ns"])
    for root in roots:
        walk(root, "", True)
    return "\n".join(lines)


def _describe(span: dict[str, Any], start: int) -> str:
    attributes = span["attributes"]
    offset_ms = (span["start_ns"] - start) / 1e6
    duration_ms = ((span["end_ns"] or span["start_ns"]) - span["start_ns"]) / 1e6
    parts = [f"{span['name']}", f"+{offset_ms:.1f}ms", f"{duration_ms:.1f}ms"]
    if "gen_ai.usage.input_tokens" in attributes:
        parts.append(
            f"tokens {attributes['gen_ai.usage.input_tokens']}->{attributes.get('gen_ai.usage.output_tokens', 0)}"
        )
        parts.append(f"model {attributes.get('gen_ai.response.model') or attributes.get('gen_ai.request.model')}")
    if "relaychain.cost" in attributes:
        parts.append(f"cost {money(attributes['relaychain.cost'], attributes.get('relaychain.cost.currency', ''))}")
    if span.get("status") == "ERROR":
        parts.append(f"ERROR {span.get('status_description') or ''}".rstrip())
    return "  ".join(parts)
