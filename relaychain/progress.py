"""Which steps of a streamed request are newly finished, in slip order, each once.

A request's jobs are read from several topics (one per step), and a fetch
returns records of different topics in any order, so the job leaving
`budget` can be read before the job leaving `sentiment`. Each job carries
every step run so far (`results`, oldest first): reporting the steps past
the longest list seen gives the slip's order whatever the arrival order.
"""

from __future__ import annotations

from relaychain.schemas import Event
from relaychain.schemas.envelope import StepRecord


class StepsSeen:
    """Steps already reported, per request being followed."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def new_steps(self, job: Event) -> tuple[StepRecord, ...]:
        """The steps `job` has finished that no earlier job of its request showed; none for an older job."""
        seen = self._counts.get(job.request_id, 0)
        fresh = job.results[seen:]
        if fresh:
            self._counts[job.request_id] = len(job.results)
        return fresh

    def forget(self, request_id: str) -> None:
        self._counts.pop(request_id, None)
