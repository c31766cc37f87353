"""The current span in OpenTelemetry's context, set and read by a hop without the context API's layers.

A hop sets its span as current around the agent (which reads it with
`trace.get_current_span()`) and reads it back when it publishes. Through
the API that is `set_span_in_context` (a copy of the current context,
then a second copy into a new `Context`), `attach` and `detach`, each
through two more calls into the runtime context: about 1 µs of a hop's
few. With the SDK's default runtime context (a `ContextVar` holding a
`Context`), the same `Context` is built in one step and the variable set
and reset directly; any other runtime context (`OTEL_PYTHON_CONTEXT`) goes
through the API as before. Either way `trace.get_current_span()` sees the
span, and child spans started inside the agent are its children.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

from opentelemetry import context
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Span, set_span_in_context
from opentelemetry.trace.propagation import _SPAN_KEY

__all__ = ["SPAN_KEY", "current_context", "enter", "leave"]

SPAN_KEY = _SPAN_KEY
"""Where a context holds its current span (OpenTelemetry's own key; read here only, not by each caller)."""


def _context_variable() -> ContextVar[Context] | None:
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    variable = getattr(runtime, "_current_context", None)
    return variable if isinstance(variable, ContextVar) else None


_VARIABLE = _context_variable()


def enter(span: Span) -> Token[Context]:
    """Make `span` current (in a new context holding what the current one does); `leave` undoes it."""
    if _VARIABLE is None:
        return context.attach(set_span_in_context(span))
    current = _VARIABLE.get()
    # A hop's context is usually empty (a lane's task starts from its member's): then no copy of it to unpack.
    return _VARIABLE.set(Context({**current, _SPAN_KEY: span}) if current else Context({_SPAN_KEY: span}))


leave: Callable[[Token[Context]], None] = context.detach if _VARIABLE is None else _VARIABLE.reset
"""Undo an `enter` (the variable's own `reset`: no Python call around it)."""


current_context: Callable[[], Context] = context.get_current if _VARIABLE is None else _VARIABLE.get
"""OpenTelemetry's current context (the variable's own `get`: no Python call around it)."""
