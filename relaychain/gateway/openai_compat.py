"""`POST /v1/chat/completions`, OpenAI-compatible: `model` names a business (or `business:model`).

The messages become the request's messages; extra body fields `vars` and
`conversation_id` carry template variables and the conversation (the SDK's
`extra_body`). The answer's content is the formatter's validated output as
JSON text. Streamed chunks carry the raw generation as it happens (for a JSON
business, the model's text before validation); when nothing was streamed the
final content comes as one chunk. `usage` sums every model call of the
request; the cost is the `relaychain.cost` extension field.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse

from relaychain.gateway.context import GatewayContext
from relaychain.gateway.errors import HttpProblem, status_of
from relaychain.gateway.intake import read_json, tenant_of
from relaychain.gateway.routes import build_request, submit, wait_answer
from relaychain.gateway.sse import KEEPALIVE, sse
from relaychain.schemas import Blocked, Cancelled, Error, Event, Request, StepUsage, TokenDelta
from relaychain.schemas import Response as Answer

OPENAI_FIELDS = {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature"}
EXTENSION_FIELDS = {"vars", "conversation_id"}
IGNORED_FIELDS = {"n", "user", "top_p", "presence_penalty", "frequency_penalty", "seed", "stop"}


def to_request(context: GatewayContext, body: dict[str, Any], tenant: str | None) -> Request:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise HttpProblem(400, "missing_model", "`model` names a business, or `business:model`")
    business, _, model_hint = model.partition(":")
    unknown = sorted(set(body) - OPENAI_FIELDS - EXTENSION_FIELDS - IGNORED_FIELDS)
    if unknown:
        raise HttpProblem(400, "unknown_field", f"unsupported field(s) {unknown}")
    options: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if body.get("temperature") is not None:
        options["temperature"] = body["temperature"]
    fields: dict[str, Any] = {
        "business": business,
        "messages": body.get("messages") or [],
        "vars": body.get("vars") or {},
        "options": options,
    }
    if model_hint:
        fields["model"] = model_hint
    if body.get("conversation_id"):
        fields["conversation_id"] = body["conversation_id"]
    return build_request(context, fields, stream=body.get("stream") is True, tenant=tenant)


def _usage(usage: tuple[StepUsage, ...]) -> dict[str, int]:
    prompt = sum(u.input_tokens for u in usage)
    completion = sum(u.output_tokens for u in usage)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _cost(usage: tuple[StepUsage, ...]) -> list[dict[str, str]]:
    totals: dict[str, Decimal] = {}
    for step in usage:
        totals[step.currency] = totals.get(step.currency, Decimal(0)) + step.cost
    return [{"amount": str(amount), "currency": currency} for currency, amount in totals.items()]


def _extension(answer: Event) -> dict[str, Any]:
    usage = getattr(answer, "usage", ())
    extension: dict[str, Any] = {"request_id": answer.request_id, "answer_type": answer.type, "cost": _cost(usage)}
    if isinstance(answer, Answer):
        extension["moderation"] = [m.model_dump(mode="json") for m in answer.moderation]
        extension["trace_id"] = answer.trace_id
    if isinstance(answer, Blocked):
        extension["blocked"] = {"stage": answer.stage, "categories": list(answer.categories)}
    return extension


def _content_and_finish(answer: Event) -> tuple[str, str]:
    if isinstance(answer, Answer):
        return json.dumps(answer.output, ensure_ascii=False), "stop"
    if isinstance(answer, Blocked):
        return "", "content_filter"
    return "", "stop"


def _problem(answer: Event) -> HttpProblem | None:
    if isinstance(answer, Error):
        return HttpProblem(status_of(answer), answer.code, answer.message, request_id=answer.request_id)
    if isinstance(answer, Cancelled):
        return HttpProblem(
            409, "cancelled", f"the request was cancelled ({answer.reason})", request_id=answer.request_id
        )
    return None


async def chat_completions(http: HttpRequest) -> Response:
    context: GatewayContext = http.app.state.context
    tenant = tenant_of(http, context.keys)
    body = await read_json(http, context.limits.max_body_bytes)
    request = to_request(context, body, tenant)
    model_name = body["model"]
    if request.options.stream:
        release = context.streams.take(tenant)
        queue = context.hub.listen(request.request_id)
        future = await submit(context, request, tenant)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _chunks(context, request, model_name, queue, future, release, include_usage=include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Request-Id": request.request_id},
        )
    future = await submit(context, request, tenant)
    answer = await wait_answer(context, request, future)
    problem = _problem(answer)
    if problem is not None:
        return problem.response()
    content, finish = _content_and_finish(answer)
    usage = getattr(answer, "usage", ())
    return JSONResponse(
        {
            "id": f"chatcmpl-{request.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": getattr(answer, "model", None) or model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": _usage(usage),
            "relaychain": _extension(answer),
        }
    )


async def _chunks(
    context: GatewayContext,
    request: Request,
    model_name: str,
    queue: asyncio.Queue,
    future: asyncio.Future[Event],
    release: Callable[[], None],
    *,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    base = {"id": f"chatcmpl-{request.request_id}", "object": "chat.completion.chunk", "created": int(time.time())}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(None, {**base, "model": model_name, "choices": [choice], **extra})

    streamed = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        items = context.follow(request.request_id, queue, future)
        async for item in items:
            if isinstance(item, TokenDelta):
                streamed = True
                yield chunk({"content": item.text})
            elif isinstance(item, Event):
                problem = _problem(item)
                if problem is not None:
                    error = {"code": problem.code, "message": problem.message, "status": problem.status}
                    yield sse(None, {"error": error})
                    return
                content, finish = _content_and_finish(item)
                if content and not streamed:
                    yield chunk({"content": content})
                yield chunk({}, finish, relaychain=_extension(item))
                if include_usage:
                    usage = _usage(getattr(item, "usage", ()))
                    yield sse(None, {**base, "model": model_name, "choices": [], "usage": usage})
                yield b"data: [DONE]\n\n"
            elif item == "keepalive":
                yield KEEPALIVE
            elif item == "timeout":
                yield sse(None, {"error": {"code": "answer_timeout", "message": "no answer in time", "status": 504}})
    finally:
        release()
