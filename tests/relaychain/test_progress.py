"""Streamed steps come in slip order, each once, whatever order the jobs of a request are read in."""

from __future__ import annotations

from relaychain.progress import StepsSeen
from relaychain.schemas import Job, Request


def test_a_later_job_read_first_reports_the_earlier_steps_in_order_and_the_older_job_nothing() -> None:
    request = Request(business="product_review", input="Great kettle")
    job = Job(
        request_id=request.request_id,
        request=request,
        model="m",
        slip=("route", "moderate.input", "sentiment", "budget", "generate"),
    )
    after_route = job.advance("router")
    after_moderation = after_route.advance("moderator")
    after_sentiment = after_moderation.advance("sentiment")
    after_budget = after_sentiment.advance("tokenizer")
    steps = StepsSeen()

    read_in = [after_route, after_budget, after_sentiment, after_moderation, after_budget]
    reported = [(record.step, record.agent) for job in read_in for record in steps.new_steps(job)]

    assert reported == [
        ("route", "router"),
        ("moderate.input", "moderator"),
        ("sentiment", "sentiment"),
        ("budget", "tokenizer"),
    ]
    steps.forget(request.request_id)
    assert [r.step for r in steps.new_steps(after_route)] == ["route"]
