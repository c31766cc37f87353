"""The stable codes of `Error` answers and dead letters: one enum every agent, the bus and callers share.

Codes travel as plain strings (`Error.code` is a `str` on the wire), so a
caller in another language matches on the text; Python callers compare with
`ErrorCode.UNKNOWN_BUSINESS` and get a typo caught by the type checker.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # The request itself.
    UNKNOWN_BUSINESS = "unknown_business"
    UNKNOWN_MODEL = "unknown_model"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    MISSING_VARIABLE = "missing_variable"
    MISSING_QUERY_VAR = "missing_query_var"
    INPUT_TOO_LONG = "input_too_long"
    TENANT_BUDGET_EXHAUSTED = "tenant_budget_exhausted"
    # The config behind the request.
    MISSING_TEMPLATE = "missing_template"
    TEMPLATE_ERROR = "template_error"
    TOKENIZER_UNAVAILABLE = "tokenizer_unavailable"
    # An event where it does not belong (a wrong route or slip).
    UNEXPECTED_EVENT = "unexpected_event"
    UNKNOWN_STEP = "unknown_step"
    EMPTY_PROMPT = "empty_prompt"
    FORMAT_NO_OUTPUT = "format_no_output"
    MEMORY_NO_ANSWER = "memory_no_answer"
    # The model.
    MODEL_UNAVAILABLE = "model_unavailable"
    MODEL_TIMEOUT = "model_timeout"
    MODEL_RATE_LIMITED = "model_rate_limited"
    MODEL_SERVER_ERROR = "model_server_error"
    MODEL_REQUEST_REJECTED = "model_request_rejected"
    MODEL_OUTPUT_INVALID = "model_output_invalid"
    MODEL_BUSY = "model_busy"
    MODEL_ENGINE_MISSING = "model_engine_missing"
    MODEL_WEIGHTS_MISSING = "model_weights_missing"
    EMBEDDER_UNAVAILABLE = "embedder_unavailable"
    EMBEDDER_REJECTED = "embedder_rejected"
    OUTPUT_INVALID = "output_invalid"
    # The stores (transient: retried by the runtime; failed: permanent).
    LEDGER_UNAVAILABLE = "ledger_unavailable"
    LEDGER_FAILED = "ledger_failed"
    JOURNAL_UNAVAILABLE = "journal_unavailable"
    JOURNAL_FAILED = "journal_failed"
    MEMORY_UNAVAILABLE = "memory_unavailable"
    MEMORY_FAILED = "memory_failed"
    # Messages the bus cannot read (an `Error` answer when the message names its request, and a dead letter).
    UNDECODABLE = "undecodable"
    UNKNOWN_TYPE = "unknown_type"
    SCHEMA_TOO_NEW = "schema_too_new"
    INVALID_EVENT = "invalid_event"
    # The runtime.
    INTERNAL_ERROR = "internal_error"
    RETRIES_EXHAUSTED = "retries_exhausted"
    HANDLER_CRASHED = "handler_crashed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    # Failures after the agent returned: its outputs could not be routed, encoded, sized or published.
    UNROUTABLE = "unroutable"
    ENCODING_FAILED = "encoding_failed"
    EVENT_TOO_LARGE = "event_too_large"
    PUBLISH_FAILED = "publish_failed"
    MIDDLEWARE_FAILED = "middleware_failed"
