"""relaychain.testing.AgentHarness: what an agent emitted, and its failures raised in the test."""

from __future__ import annotations

import pytest

from relaychain import Agent, AgentError, Error, ErrorCode, Job, Request, RetryableError, RetryPolicy, Usage
from relaychain.schemas import DeadLetter, StepUsage
from relaychain.testing import AgentHarness


def _job(*slip: str) -> Job:
    request = Request(business="b", input="hello", conversation_id="c1")
    return request.reply(Job, request=request, model="m", slip=slip or ("shout", "format"))


class Shouter(Agent[Job]):
    name = "shout"
    consumes = Job
    emits = (Job, Usage)

    async def process(self, job: Job) -> list[Job | Usage]:
        if job.request.input == "crash":
            raise ZeroDivisionError("a bug")
        if job.request.input == "refuse":
            raise AgentError(ErrorCode.MISSING_VARIABLE, "no tone given")
        usage = StepUsage(step="shout", model="none", input_tokens=1, output_tokens=1)
        return [job.advance(self.name, outputs={"shout": job.request.input.upper()}), job.reply(Usage, usage=usage)]


class Flaky(Agent[Job]):
    name = "flaky"
    consumes = Job
    emits = (Job,)
    retry = RetryPolicy(max_attempts=3, base_delay_s=0)

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def process(self, job: Job) -> Job:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetryableError(ErrorCode.MODEL_BUSY, f"busy ({self.calls})")
        return job.advance(self.name)


async def test_publish_returns_what_the_agent_emitted_and_routes_it() -> None:
    async with AgentHarness(Shouter()) as harness:
        job, usage = await harness.publish(_job())
        assert isinstance(job, Job) and job.outputs == {"shout": "HELLO"} and job.slip == ("format",)
        assert isinstance(usage, Usage) and usage.request_id == job.request_id
        # Through the real runtime: under derived ids, on the topics the routes name.
        assert [e.outputs for e in harness.published("relaychain.formatter")] == [{"shout": "HELLO"}]
        assert harness.published("relaychain.usage")[0].id != usage.id


async def test_an_agent_error_is_raised_in_the_test_or_returned_as_the_answer() -> None:
    job = _job().model_copy(update={"request": Request(business="b", input="refuse")})
    async with AgentHarness(Shouter()) as harness:
        with pytest.raises(AgentError) as caught:
            await harness.publish(job)
        assert caught.value.code == ErrorCode.MISSING_VARIABLE
        [answer] = await harness.publish(job.model_copy(update={"id": "second"}), raise_errors=False)
    assert isinstance(answer, Error) and answer.code == "missing_variable" and answer.step == "shout"


async def test_a_crash_is_raised_in_the_test_and_dead_lettered_in_production() -> None:
    job = _job().model_copy(update={"request": Request(business="b", input="crash")})
    async with AgentHarness(Shouter()) as harness:
        with pytest.raises(ZeroDivisionError):
            await harness.publish(job)
        answer, letter = await harness.publish(job.model_copy(update={"id": "second"}), raise_errors=False)
    assert isinstance(answer, Error) and answer.code == ErrorCode.INTERNAL_ERROR
    assert isinstance(letter, DeadLetter) and letter.reason == ErrorCode.HANDLER_CRASHED


async def test_the_wrong_event_type_is_refused_with_a_code() -> None:
    async with AgentHarness(Shouter()) as harness:
        with pytest.raises(AgentError) as caught:
            await harness.publish(Request(business="b", input="x"))
    assert caught.value.code == ErrorCode.UNEXPECTED_EVENT


async def test_the_agents_own_retry_policy_applies() -> None:
    flaky = Flaky(failures=2)
    async with AgentHarness(flaky) as harness:
        [job] = await harness.publish(_job("flaky", "format"))
    assert flaky.calls == 3 and job.slip == ("format",)
    always = Flaky(failures=99)
    async with AgentHarness(always) as harness:
        with pytest.raises(RetryableError):
            await harness.publish(_job("flaky", "format"))
        answer, letter = await harness.publish(_job("flaky", "format"), raise_errors=False)
    assert always.calls == 6 and answer.code == "model_busy" and letter.reason == "retries_exhausted"


async def test_an_emitted_step_without_a_route_is_raised() -> None:
    async with AgentHarness(Shouter()) as harness:
        with pytest.raises(KeyError, match="nowhere"):
            await harness.publish(_job("shout", "nowhere"))
