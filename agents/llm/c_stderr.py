"""What a C library writes to the process's stderr during one call, held back and handed to the caller.

llama.cpp prints a grammar it refuses whole to fd 2 with `fprintf`, past any
log callback: car_blog's schema unrolls into kilobytes of GBNF, printed once
per schema per process. `held_stderr` points fd 2 at a temporary file while
its block runs; on leaving, what other threads wrote meanwhile goes back to
stderr (`HeldStderr.release`), so only what the caller cuts out is dropped.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["HeldStderr", "held_stderr"]

# fd 2 is one per process: two holds at once would restore each other's target.
_ONE_AT_A_TIME = threading.Lock()


class HeldStderr:
    """The text written to fd 2 while the hold lasted (readable once the block has left)."""

    def __init__(self) -> None:
        self.text = ""

    def release(self, text: str | None = None) -> None:
        """Write `text` (default: everything held) to the real stderr."""
        out = self.text if text is None else text
        if out:
            os.write(2, out.encode("utf-8", "replace"))


@contextmanager
def held_stderr() -> Iterator[HeldStderr]:
    """fd 2 goes to a temporary file for the block; the caller releases what it keeps of it."""
    held = HeldStderr()
    with _ONE_AT_A_TIME, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            held.text = sink.read().decode("utf-8", "replace")
