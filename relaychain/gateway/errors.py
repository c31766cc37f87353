"""Bad input and refusals as HTTP statuses with JSON bodies: `{"error": {"code", "message"}}`."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from relaychain.schemas import Error

ANSWER_ERROR_STATUS: dict[str, int] = {
    "unknown_business": 404,
    "unknown_model": 404,
    "missing_variable": 400,
    "template_error": 400,
    "input_too_long": 413,
    "budget_exhausted": 429,
    "tenant_budget_exhausted": 429,
    "model_rate_limited": 429,
    "model_busy": 503,
    "model_timeout": 504,
    "deadline_exceeded": 504,
    "event_too_large": 413,
}
"""An `Error` answer's code -> the status a non-streaming HTTP caller sees (502 for the rest)."""


class HttpProblem(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, **self.details)


def error_response(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "type": "invalid_request_error" if status < 500 else "server_error",
    }
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def status_of(answer: Error) -> int:
    return ANSWER_ERROR_STATUS.get(answer.code, 503 if answer.retryable else 502)
