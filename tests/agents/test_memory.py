"""Memory policies trim exactly as specified; the memory agent loads, summarises and saves turns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from relaychain.agents.memory import MemoryAgent
from relaychain.agents.memory_policies import SummaryResult, plan_recall, turn_tokens, turns_needed
from relaychain.agents.stores.history import SqliteConversationStore, Summary, Turn
from relaychain.agents.tokens.counter import TiktokenCounter
from relaychain.agents.tokens.encodings import load_encoding
from relaychain.bus.errors import AgentError, RetryableError
from relaychain.schemas import ChatMessage, Job, Request, StepUsage, Usage
from relaychain.schemas.config import AppConfig, MemoryPolicy


class WordCounter:
    """One token per whitespace-separated word: makes budgets easy to reason about."""

    def count(self, text: str) -> int:
        return len(text.split())


def turns(n: int) -> list[Turn]:
    return [Turn(user=f"q{i} " * (i + 1), assistant=f"a{i}") for i in range(n)]


# --- policies ----------------------------------------------------------------


def test_none_recalls_nothing() -> None:
    assert plan_recall(MemoryPolicy(kind="none"), turns(3)).turns == ()


def test_full_recalls_everything() -> None:
    assert plan_recall(MemoryPolicy(kind="full"), turns(7)).turns == tuple(turns(7))


@pytest.mark.parametrize(("stored", "window", "expected"), [(10, 3, [7, 8, 9]), (2, 3, [0, 1]), (3, 3, [0, 1, 2])])
def test_window_keeps_the_last_n_turns(stored: int, window: int, expected: list[int]) -> None:
    recall = plan_recall(MemoryPolicy(kind="window", turns=window), turns(stored))
    assert recall.turns == tuple(turns(stored)[i] for i in expected)


def test_tokens_keeps_the_newest_turns_that_fit() -> None:
    # turn i costs (i + 1) + 1 words: 2, 3, 4, 5, 6 for turns 0..4.
    history = turns(5)
    assert plan_recall(MemoryPolicy(kind="tokens", max_tokens=11), history, counter=WordCounter()).turns == (
        history[3],
        history[4],
    )
    assert plan_recall(MemoryPolicy(kind="tokens", max_tokens=15), history, counter=WordCounter()).turns == (
        history[2],
        history[3],
        history[4],
    )


def test_tokens_keeps_nothing_when_the_newest_turn_alone_is_too_big() -> None:
    recall = plan_recall(MemoryPolicy(kind="tokens", max_tokens=5), turns(5), counter=WordCounter())
    assert recall.turns == ()


def test_tokens_window_is_contiguous_even_if_an_older_small_turn_would_fit() -> None:
    history = [Turn(user="tiny", assistant="x"), Turn(user="big " * 20, assistant="x"), Turn(user="new", assistant="x")]
    recall = plan_recall(MemoryPolicy(kind="tokens", max_tokens=10), history, counter=WordCounter())
    assert recall.turns == (history[2],)


def test_tokens_counts_with_the_models_tokenizer_and_chat_framing() -> None:
    counter = TiktokenCounter(load_encoding("cl100k_base"))
    history = [
        Turn(user=f"What is the WLTP range of car number {i}?", assistant=f"About {400 + i} km.") for i in range(30)
    ]
    budget = 100
    kept = plan_recall(MemoryPolicy(kind="tokens", max_tokens=budget), history, counter=counter).turns
    framed = [m for turn in kept for m in turn.messages()]
    cost = counter.count_messages(framed) - counter.count_messages(())
    assert kept == tuple(history[-len(kept) :])
    assert cost <= budget
    one_more = [m for turn in history[-len(kept) - 1 :] for m in turn.messages()]
    assert counter.count_messages(one_more) - counter.count_messages(()) > budget
    assert sum(turn_tokens(counter, t) for t in kept) == cost


def test_summary_overflow_is_the_uncovered_turns_that_do_not_fit() -> None:
    history = turns(6)  # costs 2..7
    policy = MemoryPolicy(kind="summary", max_tokens=13, summary_model="m")
    recall = plan_recall(policy, history, summary=Summary(text="s", turns_covered=1), counter=WordCounter())
    assert recall.turns == (history[4], history[5])
    assert recall.overflow == (history[1], history[2], history[3])
    assert recall.messages()[0] == ChatMessage(role="system", content="Summary of the earlier conversation:\ns")


def test_token_policies_need_a_counter() -> None:
    with pytest.raises(ValueError, match="counter"):
        plan_recall(MemoryPolicy(kind="tokens", max_tokens=10), turns(2))


# --- the agent ---------------------------------------------------------------


def app_config(memory: MemoryPolicy) -> AppConfig:
    price = {"input_per_million": "1", "output_per_million": "2"}
    model = {
        "provider": "openai",
        "tokenizer": "tiktoken:cl100k_base",
        "context_window": 4096,
        "max_output_tokens": 512,
    }
    return AppConfig.model_validate(
        {
            "models": {"chat": {**model, "price": price}, "cheap": {**model, "price": price}},
            "businesses": {
                "support": {
                    "default_model": "chat",
                    "allowed_models": ["chat"],
                    "templates": {"default": "t.j2"},
                    "output_schema": "answer",
                    "steps": ["memory.load", "generate", "format", "memory.save"],
                    "memory": memory.model_dump(),
                }
            },
            "output_schemas": {"answer": "answer.json"},
        }
    )


def job(step: str, text: str, *, conversation: str | None = "c1", result: dict | None = None) -> Job:
    request = Request(business="support", input=text, conversation_id=conversation)
    steps = ("memory.load", "generate", "format", "memory.save")
    slip = steps[steps.index(step) :]
    return Job(
        request=request, business="support", conversation_id=conversation, model="chat", slip=slip, result=result
    )


class RecordingSummariser:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Turn, ...], str | None]] = []

    async def __call__(self, model: str, folded: Sequence[Turn], previous: str | None) -> SummaryResult:
        self.calls.append((model, tuple(folded), previous))
        text = " | ".join(filter(None, [previous, *(t.user.split()[0] for t in folded)]))
        usage = StepUsage(step="generate", model=model, input_tokens=10, output_tokens=3, input_cost=Decimal("0.01"))
        return SummaryResult(text=text, usage=usage)


async def converse(agent: MemoryAgent, text: str, answer: dict) -> Job:
    """One turn: load, then save what the formatter produced. Returns the loaded job."""
    (loaded, *_) = await agent.handle(job("memory.load", text))
    saved = await agent.handle(job("memory.save", text, result=answer).model_copy(update={"id": f"save-{text}"}))
    assert saved == []
    return loaded


async def test_agent_saves_the_formatted_answer_and_loads_it_back(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "m.db")
    agent = MemoryAgent(app_config(MemoryPolicy(kind="window", turns=2)), store)
    for n in range(3):
        await converse(agent, f"hi {n}", {"reply": f"hello {n}"})
    (loaded, *rest) = await agent.handle(job("memory.load", "next"))
    assert rest == []
    assert loaded.slip[0] == "generate"
    assert loaded.history == (
        ChatMessage(role="user", content="hi 1"),
        ChatMessage(role="assistant", content=json.dumps({"reply": "hello 1"})),
        ChatMessage(role="user", content="hi 2"),
        ChatMessage(role="assistant", content=json.dumps({"reply": "hello 2"})),
    )
    await store.close()


async def test_a_redelivered_save_is_recorded_once(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "m.db")
    agent = MemoryAgent(app_config(MemoryPolicy(kind="full")), store)
    save = job("memory.save", "hi", result={"reply": "hello"})
    await agent.handle(save)
    await agent.handle(save)
    assert await store.load("c1") == [Turn(user="hi", assistant='{"reply": "hello"}')]
    await store.close()


async def test_without_a_conversation_nothing_is_loaded_or_saved(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "m.db")
    agent = MemoryAgent(app_config(MemoryPolicy(kind="full")), store)
    saved = await agent.handle(job("memory.save", "hi", conversation=None, result={"r": 1}))
    assert saved == []
    (loaded,) = await agent.handle(job("memory.load", "hi", conversation=None))
    assert loaded.history == ()
    await store.close()


async def test_save_without_an_answer_is_a_typed_error(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "m.db")
    agent = MemoryAgent(app_config(MemoryPolicy(kind="full")), store)
    with pytest.raises(AgentError) as raised:
        await agent.handle(job("memory.save", "hi"))
    assert raised.value.code == "memory_no_answer"
    await store.close()


async def test_summary_policy_summarises_overflow_prices_it_and_survives_a_restart(tmp_path: Path) -> None:
    policy = MemoryPolicy(kind="summary", max_tokens=40, summary_model="cheap")
    summariser = RecordingSummariser()
    counter = WordCounter()
    store = SqliteConversationStore(tmp_path / "m.db")
    agent = MemoryAgent(app_config(policy), store, counter_for=lambda _: counter, summarise=summariser)
    # Each turn costs 10 + 1 words; the budget keeps 3 turns verbatim.
    for n in range(4):
        await converse(agent, f"turn{n} " * 10, {"r": n})
    assert summariser.calls == []  # 4 stored turns were saved, only 3 were ever loaded at once
    loaded, *emitted = await agent.handle(job("memory.load", "next"))
    assert [call[1:] for call in summariser.calls] == [((Turn(user="turn0 " * 10, assistant='{"r": 0}'),), None)]
    assert summariser.calls[0][0] == "cheap"
    assert [type(e) for e in emitted] == [Usage]
    assert emitted[0].usage.step == "memory.summary" and emitted[0].usage.model == "cheap"
    assert loaded.usage == (emitted[0].usage,)
    assert loaded.history[0].role == "system" and "turn0" in loaded.history[0].content
    assert [m.content for m in loaded.history[1::2]] == [f"turn{n} " * 10 for n in (1, 2, 3)]
    await store.close()

    # A restarted worker reuses the stored summary: no model call for turns already folded in.
    reopened = LoadRecorder(tmp_path / "m.db")
    restarted = MemoryAgent(app_config(policy), reopened, counter_for=lambda _: counter, summarise=summariser)
    again, *emitted_again = await restarted.handle(job("memory.load", "next"))
    assert emitted_again == [] and len(summariser.calls) == 1
    assert again.history == loaded.history
    assert reopened.loads == [(None, 1)]  # the turn the summary covers is not read again
    await reopened.set_summary("c1", Summary(text="ignored", turns_covered=0))
    assert await reopened.get_summary("c1") == Summary(text="turn0", turns_covered=1)

    await converse(restarted, "turn4 " * 10, {"r": 4})
    await restarted.handle(job("memory.load", "next"))
    assert summariser.calls[-1][1:] == ((Turn(user="turn1 " * 10, assistant='{"r": 1}'),), "turn0")
    assert await reopened.get_summary("c1") == Summary(text="turn0 | turn1", turns_covered=2)
    await reopened.close()


def test_summary_policy_without_a_summariser_fails_at_start_up(tmp_path: Path) -> None:
    policy = MemoryPolicy(kind="summary", max_tokens=40, summary_model="cheap")
    with pytest.raises(ValueError, match="summariser"):
        MemoryAgent(app_config(policy), SqliteConversationStore(tmp_path / "m.db"), counter_for=lambda _: WordCounter())


class SummaryWriteFailsOnce(SqliteConversationStore):
    """The store goes away between the summary call and its save, as a crash there would leave it."""

    failed = False

    async def set_summary(self, conversation_id: str, summary: Summary) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("store went away")
        await super().set_summary(conversation_id, summary)


async def test_a_summary_is_paid_once_when_its_job_is_redelivered(tmp_path: Path) -> None:
    from relaychain.agents.stores.journal import SqliteJournal

    policy = MemoryPolicy(kind="summary", max_tokens=40, summary_model="cheap")
    summariser = RecordingSummariser()
    counter = WordCounter()
    store = SummaryWriteFailsOnce(tmp_path / "m.db")
    store.failed = True
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    agent = MemoryAgent(app_config(policy), store, counter_for=lambda _: counter, summarise=summariser, journal=journal)
    for n in range(4):
        await converse(agent, f"turn{n} " * 10, {"r": n})
    store.failed = False
    load = job("memory.load", "next")
    with pytest.raises(RetryableError):
        await agent.handle(load)
    loaded, *emitted = await agent.handle(load)
    assert len(summariser.calls) == 1
    assert [type(e) for e in emitted] == [Usage] and loaded.usage == (emitted[0].usage,)
    assert await store.get_summary("c1") == Summary(text="turn0", turns_covered=1)
    await journal.close()
    await store.close()


@pytest.mark.parametrize("budget", [0, 9, 30, 120, 400])
def test_a_bounded_load_recalls_what_a_full_load_does(budget: int) -> None:
    counter = TiktokenCounter(load_encoding("cl100k_base"))
    history = [Turn(user="q" * (n % 7), assistant=" a b" * (n % 5)) for n in range(120)]
    policy = MemoryPolicy(kind="tokens", max_tokens=budget + 1)
    newest = turns_needed(policy, counter)
    assert newest is not None and newest < len(history)
    everything = plan_recall(policy, history, counter=counter)
    assert plan_recall(policy, history[-newest:], counter=counter) == everything
    assert turns_needed(MemoryPolicy(kind="window", turns=4)) == 4
    assert turns_needed(MemoryPolicy(kind="full")) is None


class LoadRecorder(SqliteConversationStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.loads: list[tuple[int | None, int]] = []

    async def load(self, conversation_id: str, *, newest: int | None = None, after: int = 0) -> list[Turn]:
        self.loads.append((newest, after))
        return await super().load(conversation_id, newest=newest, after=after)


async def test_the_agent_loads_only_what_the_policy_can_keep(tmp_path: Path) -> None:
    store = LoadRecorder(tmp_path / "m.db")
    agent = MemoryAgent(app_config(MemoryPolicy(kind="window", turns=2)), store)
    for n in range(4):
        await converse(agent, f"hi {n}", {"reply": f"hello {n}"})
    assert set(store.loads) == {(2, 0)}
    await store.close()
