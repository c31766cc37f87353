"""Leaving without the interpreter's teardown still flushes output, joins threads, runs atexit hooks, keeps codes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from relaychain.process_exit import exit_code

SCRIPT = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from relaychain.process_exit import run_and_leave

def command():
    atexit.register(lambda: print("atexit ran", flush=False))
    # A pool's idle worker would wait forever if the pool were not told to stop first.
    ThreadPoolExecutor(1).submit(lambda: None).result()
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished", flush=False))).start()
    print("x" * 100_000, flush=False)
    sys.exit({code!r})

run_and_leave(command)
"""


def leave_with(code: object, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "leave.py"
    script.write_text(textwrap.dedent(SCRIPT.format(code=code)))
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env={"PYTHONPATH": str(root)},
    )


@pytest.mark.parametrize(("code", "expected"), [(None, 0), (3, 3), ("bad input", 1)])
def test_output_threads_and_atexit_hooks_finish_before_the_exit_code(
    code: object, expected: int, tmp_path: Path
) -> None:
    done = leave_with(code, tmp_path)
    assert done.returncode == expected, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "x" * 100_000, "buffered output was flushed"
    assert lines[1:] == ["thread finished", "atexit ran"], "threads are joined before the atexit hooks run"
    assert done.stderr.strip() == ("bad input" if code == "bad input" else "")


def test_exit_codes_are_those_of_sys_exit() -> None:
    assert [exit_code(None), exit_code(0), exit_code(2)] == [0, 0, 2]
