"""One enum of error codes: every code an agent or the bus raises is a member, and travels as its plain string."""

from __future__ import annotations

import ast
from pathlib import Path

from relaychain.bus.codec import EventCodec
from relaychain.schemas import PUBLIC_EVENTS, Error, ErrorCode, Request

ROOT = Path(__file__).resolve().parents[2]
RAISERS = {"AgentError", "RetryableError", "UndecodableMessage"}


def test_an_error_code_is_a_plain_string_on_the_wire() -> None:
    codec = EventCodec(PUBLIC_EVENTS)
    error = Request(business="b", input="x").reply(Error, code=ErrorCode.UNKNOWN_STEP, message="m", agent="a")
    decoded = codec.decode(codec.encode(error))
    assert decoded.code == "unknown_step" and type(decoded.code) is str and decoded.code == ErrorCode.UNKNOWN_STEP
    assert b'"code":"unknown_step"' in codec.encode(error)


def test_agents_and_the_bus_raise_no_string_literal_codes() -> None:
    """A literal code is a typo waiting to happen (`unexpected_step` vs `unknown_step`); the enum is the list."""
    literals = []
    for path in [*(ROOT / "agents").rglob("*.py"), *(ROOT / "bus").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            first = node.args[0]
            if name in (*RAISERS, "__init__") and isinstance(first, ast.Constant) and isinstance(first.value, str):
                literals.append(f"{path.relative_to(ROOT)}:{node.lineno} {first.value!r}")
    assert not literals, literals


def test_codes_are_unique_snake_case() -> None:
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values)) and all(v.isidentifier() and v.islower() for v in values)
