"""Keep the garbage collector's full passes off what start-up allocated.

A worker imports torch, transformers and the agents' models and indexes
before it takes its first message: about half a million objects that live
as long as the process. CPython's full collection walks every tracked
object, so each one cost 300-400 ms of event-loop time on this 2-core
machine (`bench/pipeline.py`: 0.4 ms per request). `gc.freeze()` moves what
is alive at that moment into a generation the collector never scans; the
objects are still freed when their reference counts drop.
"""

from __future__ import annotations

import atexit
import gc

_frozen = False


def freeze_start_up_heap() -> None:
    """Collect start-up's garbage, then freeze what is left; once per process (the first app to be warm)."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()
    # Back in view for the interpreter's last collection, so extension objects in cycles are finalised.
    atexit.register(gc.unfreeze)
