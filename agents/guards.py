"""The checks every agent makes before its work, written once: a job, at a step it runs, for a known business."""

from __future__ import annotations

from relaychain.bus.errors import AgentError
from relaychain.schemas import Event, Job
from relaychain.schemas.config import AppConfig, BusinessConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["business_of", "job_for", "unknown_step"]


def job_for(agent: str, event: Event) -> Job:
    """`event` as a job, or the typed error for an agent that only handles jobs."""
    if not isinstance(event, Job):
        raise AgentError(ErrorCode.UNEXPECTED_EVENT, f"{agent} handles jobs, not {event.type} events")
    return event


def unknown_step(agent: str, step: str | None) -> AgentError:
    return AgentError(ErrorCode.UNKNOWN_STEP, f"{agent} has no step {step!r}", details={"step": step})


def business_of(config: AppConfig, event: Event) -> BusinessConfig:
    business = config.businesses.get(event.business)
    if business is None:
        raise AgentError(
            ErrorCode.UNKNOWN_BUSINESS, f"no business {event.business!r}", details={"business": event.business}
        )
    return business
