"""The chat page and what it reads: the businesses with their models and variables, a request's trace tree."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse, Response

from relaychain.gateway.context import GatewayContext
from relaychain.gateway.errors import HttpProblem
from relaychain.observability.jsonl import read_spans
from relaychain.trace_view import render_tree, spans_of_request

STATIC = resources.files("relaychain.gateway") / "static"
ASSETS = {"chat.js": "text/javascript", "chat.css": "text/css"}


async def chat_page(http: HttpRequest) -> Response:
    return HTMLResponse(STATIC.joinpath("chat.html").read_text(encoding="utf-8"))


async def asset(http: HttpRequest) -> Response:
    name = http.path_params["name"]
    if name not in ASSETS:
        raise HttpProblem(404, "not_found", f"no asset {name}")
    return Response(STATIC.joinpath(name).read_text(encoding="utf-8"), media_type=ASSETS[name])


async def businesses(http: HttpRequest) -> Response:
    context: GatewayContext = http.app.state.context
    return JSONResponse(
        {
            name: {
                "description": business.description,
                "default_model": business.default_model,
                "models": list(business.allowed_models),
                "variables": list(business.variables),
                "memory": business.memory.kind,
            }
            for name, business in context.settings.app.businesses.items()
        }
    )


async def trace_tree(http: HttpRequest) -> Response:
    """One request's spans as the text tree `relaychain trace` prints (embedded mode: the span file)."""
    context: GatewayContext = http.app.state.context
    context.owned(http, http.path_params["request_id"])
    path = context.host.trace_file
    if path is None:
        raise HttpProblem(404, "no_traces", "traces are read from the span file, which only embedded mode writes")
    spans = await asyncio.to_thread(_spans_of, context, path, http.path_params["request_id"])
    if not spans:
        raise HttpProblem(404, "no_spans", "no spans for this request yet")
    return JSONResponse({"tree": render_tree(spans), "spans": len(spans)})


def _spans_of(context: GatewayContext, path: Path, request_id: str) -> list[dict[str, Any]]:
    """Off the event loop: flushing waits for the exporter thread, and the file grows with every request."""
    context.host.telemetry.flush()
    return spans_of_request(read_spans(path), request_id) if path.exists() else []
