"""`/v1/requests`: publish a request and answer with JSON, or stream it as server-sent events; status; cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse

from relaychain.gateway.context import GatewayContext
from relaychain.gateway.errors import HttpProblem, error_response
from relaychain.gateway.hub import Progress
from relaychain.gateway.intake import read_json, tenant_of
from relaychain.gateway.sse import KEEPALIVE, sse
from relaychain.schemas import Event, Request, RequestOptions, TokenDelta

REQUEST_FIELDS = {"business", "model", "input", "messages", "vars", "conversation_id", "options"}


def build_request(context: GatewayContext, body: dict[str, Any], *, stream: bool, tenant: str | None) -> Request:
    unknown = sorted(set(body) - REQUEST_FIELDS - {"stream"})
    if unknown:
        raise HttpProblem(400, "unknown_field", f"unknown field(s) {unknown}", allowed=sorted(REQUEST_FIELDS))
    business = body.get("business")
    if not isinstance(business, str) or business not in context.settings.app.businesses:
        raise HttpProblem(
            404,
            "unknown_business",
            f"unknown business {business!r}",
            known=sorted(context.settings.app.businesses),
        )
    fields = {k: v for k, v in body.items() if k in REQUEST_FIELDS}
    try:
        options = RequestOptions.model_validate(fields.pop("options", None) or {})
        return Request.model_validate(
            {**fields, "options": options.model_copy(update={"stream": stream}), "tenant": tenant}
        )
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise HttpProblem(422, "invalid_request", "the request is not valid", problems=problems) from None


async def submit(context: GatewayContext, request: Request, tenant: str | None) -> asyncio.Future[Event]:
    supersede = context.settings.app.businesses[request.business].in_flight == "supersede"
    _, future = await context.hub.submit(request, tenant=tenant, supersede=supersede)
    return future


async def create_request(http: HttpRequest) -> Response:
    context: GatewayContext = http.app.state.context
    tenant = tenant_of(http, context.keys)
    body = await read_json(http, context.limits.max_body_bytes)
    stream = body.get("stream") is True
    request = build_request(context, body, stream=stream, tenant=tenant)
    if stream:
        release = context.streams.take(tenant)
        queue = context.hub.listen(request.request_id)
        future = await submit(context, request, tenant)
        return StreamingResponse(
            _sse_events(context, request, queue, future, release),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Request-Id": request.request_id},
        )
    future = await submit(context, request, tenant)
    answer = await wait_answer(context, request, future)
    return Response(
        answer.model_dump_json(), media_type="application/json", headers={"X-Request-Id": request.request_id}
    )


async def wait_answer(context: GatewayContext, request: Request, future: asyncio.Future[Event]) -> Event:
    """The answer; a caller that goes away (its task cancelled) cancels the request."""
    try:
        return await asyncio.wait_for(asyncio.shield(future), context.limits.answer_timeout_s)
    except TimeoutError:
        raise HttpProblem(
            504,
            "answer_timeout",
            f"no answer within {context.limits.answer_timeout_s:g}s",
            request_id=request.request_id,
        ) from None
    except asyncio.CancelledError:
        context.cancel_later(request.request_id, "client_disconnected")
        raise


async def _sse_events(
    context: GatewayContext,
    request: Request,
    queue: asyncio.Queue,
    future: asyncio.Future[Event],
    release: Callable[[], None],
) -> AsyncIterator[bytes]:
    try:
        yield sse("request", {"request_id": request.request_id, "conversation_id": request.conversation_id})
        items = context.follow(request.request_id, queue, future)
        async for item in items:
            if isinstance(item, TokenDelta):
                yield sse("delta", {"step": item.step, "index": item.index, "text": item.text})
            elif isinstance(item, Progress):
                yield sse("progress", {"step": item.step, "agent": item.agent})
            elif isinstance(item, Event):
                yield sse("answer", item.model_dump(mode="json"))
            elif item == "keepalive":
                yield KEEPALIVE
            else:
                yield sse("error", {"code": "answer_timeout", "request_id": request.request_id})
    finally:
        release()


async def request_status(http: HttpRequest) -> Response:
    context: GatewayContext = http.app.state.context
    tracked = context.owned(http, http.path_params["request_id"])
    return JSONResponse(tracked.view())


async def cancel_request(http: HttpRequest) -> Response:
    context: GatewayContext = http.app.state.context
    tracked = context.owned(http, http.path_params["request_id"])
    if tracked.status == "done":
        return error_response(
            409, "already_answered", "the request has its answer already", request_id=tracked.request.request_id
        )
    await context.hub.cancel(tracked.request.request_id)
    return JSONResponse(tracked.view(), status_code=202)
