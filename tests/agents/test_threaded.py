"""What the local engines share: the default thread count."""

from __future__ import annotations

import os
from pathlib import Path

from relaychain.agents.llm.threaded import physical_cores


def test_one_thread_per_physical_core_the_process_may_use() -> None:
    allowed = os.sched_getaffinity(0)
    cores = physical_cores()
    assert 1 <= cores <= len(allowed)
    siblings = {
        Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip() for cpu in allowed
    }
    assert cores == len(siblings)
