"""The ASGI app: routes, and every refusal as a JSON body."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relaychain.gateway import openai_compat, page, routes
from relaychain.gateway.context import GatewayContext
from relaychain.gateway.errors import HttpProblem, error_response
from relaychain.gateway.host import GatewayHost


async def livez(http: HttpRequest) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(http: HttpRequest) -> Response:
    context: GatewayContext = http.app.state.context
    ready = context.host.ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def _problem(http: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, HttpProblem)
    return exc.response()


async def _http_error(http: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


def create_app(host: GatewayHost) -> Starlette:
    """The app over a started (or soon started) `GatewayHost`."""
    app = Starlette(
        routes=[
            Route("/", page.chat_page),
            Route("/static/{name}", page.asset),
            Route("/livez", livez),
            Route("/readyz", readyz),
            Route("/v1/businesses", page.businesses),
            Route("/v1/requests", routes.create_request, methods=["POST"]),
            Route("/v1/requests/{request_id}", routes.request_status, methods=["GET"]),
            Route("/v1/requests/{request_id}", routes.cancel_request, methods=["DELETE"]),
            Route("/v1/requests/{request_id}/trace", page.trace_tree),
            Route("/v1/chat/completions", openai_compat.chat_completions, methods=["POST"]),
        ],
        exception_handlers={HttpProblem: _problem, HTTPException: _http_error},
    )
    app.state.context = GatewayContext(host)
    return app
