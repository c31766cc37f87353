"""held_stderr: fd 2 held back during a block, then released as the caller chooses."""

from __future__ import annotations

import ctypes
import os

import pytest

from relaychain.agents.llm.c_stderr import held_stderr

_LIBC = ctypes.CDLL(None)


def test_what_c_writes_to_fd_2_is_held_and_released_on_request(capfd: pytest.CaptureFixture[str]) -> None:
    with held_stderr() as held:
        _LIBC.write(2, b"from C\n", 7)
        os.write(2, b"from Python\n")
    assert held.text == "from C\nfrom Python\n"
    assert capfd.readouterr().err == ""
    held.release("kept\n")
    assert capfd.readouterr().err == "kept\n"


def test_stderr_is_restored_when_the_block_raises(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), held_stderr() as held:
        os.write(2, b"before the error\n")
        raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert held.text == "before the error\n"
    assert capfd.readouterr().err == "after\n"
