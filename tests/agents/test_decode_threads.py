"""The choice between decoding on every core and on one, from token timings as the llama.cpp engine reports them."""

from __future__ import annotations

from collections.abc import Callable

from relaychain.agents.llm.decode_threads import FIRST_PROBE_AFTER, LONGEST_GAP, PROBE_TOKENS, DecodeThreads

IDLE = {2: 0.010, 1: 0.014}
"""Seconds per token measured on an idle 2-core machine (SmolLM2): two threads win."""
BUSY = {2: 0.035, 1: 0.015}
"""The same with another process keeping one core busy: one thread wins."""


def decode(threads: DecodeThreads, tokens: int, machine: Callable[[int], dict[int, float]]) -> list[int]:
    """The thread count each of `tokens` tokens was decoded with; `machine(i)` is the machine during token i."""
    used = []
    for index in range(tokens):
        count = threads.now
        used.append(count)
        threads.observed(machine(index)[count])
    return used


def test_a_fixed_count_never_changes() -> None:
    threads = DecodeThreads((3,))
    assert set(decode(threads, 500, lambda _: {3: 0.5})) == {3}


def test_an_idle_machine_decodes_on_every_core_and_compares_ever_more_rarely() -> None:
    used = decode(DecodeThreads((2, 1)), 20_000, lambda _: IDLE)
    assert used[:FIRST_PROBE_AFTER] == [2] * FIRST_PROBE_AFTER
    single = used.count(1)
    assert 0 < single <= PROBE_TOKENS * 25, "probes of one thread thin out to one per LONGEST_GAP tokens"
    assert used[-LONGEST_GAP:].count(1) <= PROBE_TOKENS


def test_a_busy_machine_moves_to_one_thread_at_the_first_comparison_and_pays_little_for_later_ones() -> None:
    used = decode(DecodeThreads((2, 1)), 20_000, lambda _: BUSY)
    assert used[FIRST_PROBE_AFTER + PROBE_TOKENS] == 1
    slow = used[FIRST_PROBE_AFTER + PROBE_TOKENS :].count(2)
    extra = slow * (BUSY[2] - BUSY[1])
    assert extra / (len(used) * BUSY[1]) < 0.01, "probing every core costs under 1 % on a busy machine"


def test_a_neighbour_starting_is_noticed_within_a_few_tokens_not_at_the_next_scheduled_comparison() -> None:
    used = decode(DecodeThreads((2, 1)), 6_000, lambda index: IDLE if index < 5_000 else BUSY)
    assert used[4_999] == 2
    switched = 5_000 + 2 * PROBE_TOKENS
    assert used[switched] == 1
    assert used[switched:].count(2) <= PROBE_TOKENS * 8, "then only the scheduled comparisons use every core"


def test_a_machine_that_turns_idle_again_goes_back_to_every_core_within_the_longest_gap() -> None:
    used = decode(DecodeThreads((2, 1)), 12_000, lambda index: BUSY if index < 5_000 else IDLE)
    assert used[4_999] == 1
    assert used[5_000 + LONGEST_GAP + PROBE_TOKENS :].count(2) > 0.99 * len(used[5_000 + LONGEST_GAP + PROBE_TOKENS :])


def test_one_slow_token_does_not_decide_a_comparison() -> None:
    threads = DecodeThreads((2, 1))

    def machine(index: int) -> dict[int, float]:
        # A GC pause lands on one of every core's tokens just before the first comparison.
        return {2: 0.5, 1: IDLE[1]} if index == FIRST_PROBE_AFTER - 1 else IDLE

    used = decode(threads, FIRST_PROBE_AFTER + 2 * PROBE_TOKENS, machine)
    assert used[-1] == 2
