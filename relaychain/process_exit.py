"""Leaving the process once a command is done, without the interpreter's teardown.

After `relaychain run` has printed its answer, closed its stores and flushed
its spans, CPython's finalisation still frees every object one by one: the
agents' models, indexes, tokenizers and imported modules. That took 0.3-0.6 s
of every run (the main job's "exit" phase in bench/main_job.py), with
nothing left to save. Here the steps of a normal exit that matter still run
(standard streams flushed, non-daemon threads joined, `atexit` hooks such as
logging's and OpenTelemetry's shutdown), then the process ends with the
command's exit code. Only the console script and `python -m relaychain.cli`
exit this way; a command invoked in-process (click's test runner) returns as
before.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

__all__ = ["exit_code", "run_and_leave"]


def run_and_leave(command: Callable[[], object]) -> NoReturn:
    """Run `command` (a click entry point, which ends by raising SystemExit) and leave with its exit code."""
    try:
        command()
        code = 0
    except SystemExit as done:
        code = exit_code(done.code)
    _leave(code)


def exit_code(value: object) -> int:
    """The process exit code `sys.exit(value)` gives: None is 0, an int is itself, anything else is printed, 1."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _leave(code: int) -> NoReturn:
    # What `Py_FinalizeEx` does first, in its order: thread pools told to stop and every non-daemon thread
    # joined (`threading._shutdown`), then the atexit hooks.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe (`relaychain run | head`): nothing more can reach the reader.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
