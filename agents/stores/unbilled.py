"""Usage the ledger could not take: kept on disk until it can, so a ledger outage loses no billing.

When recording a `Usage` event fails, the tokenizer appends the event to
`unbilled.jsonl` (one JSON event per line) before the failure goes back to
the runtime, which retries it and finally dead-letters it. The next time the
ledger takes a write, the tokenizer replays the spool into it; the ledger is
idempotent on event ids, so an event that a retry recorded meanwhile counts
once. `relaychain costs` warns while the spool holds events (their usage is
not in its totals yet) and `relaychain costs --replay-unbilled` replays it
by hand.

A drain first renames the spool, so appends from other processes sharing the
data dir go to a fresh file and nothing is read and truncated at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from relaychain.schemas import Usage

__all__ = ["UNBILLED_FILE", "DrainReport", "UnbilledSpool"]

UNBILLED_FILE = "unbilled.jsonl"

log = logging.getLogger(__name__)


class DrainReport:
    def __init__(self) -> None:
        self.recorded = 0
        self.already_recorded = 0
        self.left = 0


class UnbilledSpool:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()
        self.pending = self.path.exists()
        """Whether this process may have something to replay (another process's appends are found by `count`)."""

    async def append(self, usage: Usage) -> None:
        line = usage.model_dump_json() + "\n"
        async with self._lock:
            await asyncio.to_thread(self._append_lines, [line])
            self.pending = True

    def count(self) -> int:
        """Events waiting (a replayed duplicate is counted until the next drain)."""
        try:
            with self.path.open("rb") as spool:
                return sum(1 for line in spool if line.strip())
        except FileNotFoundError:
            return 0

    async def drain(self, record: Callable[[Usage], Awaitable[bool]]) -> DrainReport:
        """Record every spooled event; whatever still fails goes back to the spool."""
        report = DrainReport()
        async with self._lock:
            draining = self.path.with_name(f"{self.path.name}.{os.getpid()}.draining")
            try:
                os.replace(self.path, draining)
            except FileNotFoundError:
                self.pending = False
                return report
            lines = (await asyncio.to_thread(draining.read_text, encoding="utf-8")).splitlines(keepends=True)
            lines = [line for line in lines if line.strip()]
            for index, line in enumerate(lines):
                try:
                    if await record(Usage.model_validate_json(line)):
                        report.recorded += 1
                    else:
                        report.already_recorded += 1
                except Exception as exc:
                    rest = lines[index:]
                    report.left = len(rest)
                    await asyncio.to_thread(self._append_lines, rest)
                    log.warning(
                        "ledger still failing (%s); %d unbilled usage events stay in %s", exc, len(rest), self.path
                    )
                    break
            draining.unlink()
            self.pending = report.left > 0
        return report

    def _append_lines(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write per batch with O_APPEND: lines from concurrent processes do not interleave.
        with self.path.open("a", encoding="utf-8") as spool:
            spool.write("".join(lines))
            spool.flush()
            os.fsync(spool.fileno())
