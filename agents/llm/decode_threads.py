"""How many threads decode a local model's next token: every core while that is measured faster than one.

Decoding one token is a little work per operation, and the threads meet at a
barrier after each one. On this project's 2-core machine, idle, two threads
decode SmolLM2 1.3-1.5x faster than one (~95-108 against ~70 tokens/s); with
another process keeping one core busy they decode 2-6x slower than one
thread, each barrier waiting for a thread the OS has not scheduled. Which
case holds changes while a worker runs (its own event loop, a neighbour's
batch job), so the engine measures instead of guessing: it decodes with the
count that was faster at the last comparison and, now and then, times a few
tokens with the other. A comparison the current count wins makes the next
one twice as far away, so a machine that stays busy pays for a probe of a
few slow tokens about once per thousand; tokens that turn much slower than
at the last comparison (a neighbour just started) call the next one at once.

Greedy output is the same with either count (llama.cpp splits a matrix
product by rows, each row's sum made by one thread), so switching never
changes an answer.
"""

from __future__ import annotations

from collections import deque
from statistics import median

__all__ = ["DecodeThreads"]

PROBE_TOKENS = 4
"""Tokens timed with the other count at a comparison, and the window of recent tokens it is compared with."""

FIRST_PROBE_AFTER = 32
"""Tokens decoded with the chosen count before the first comparison, and after each switch."""

LONGEST_GAP = 1024
"""The most tokens between two comparisons: a machine that turns idle is noticed within this many."""

SLOWDOWN = 1.5
"""Recent tokens this much slower than at the last comparison call the next one now."""


class DecodeThreads:
    """The thread count for each next token, from the timings the engine reports with `observed`."""

    def __init__(self, choices: tuple[int, ...]) -> None:
        """`choices`: one count (fixed by configuration) or two (every core, then one), the first chosen first."""
        if not 1 <= len(choices) <= 2:
            raise ValueError(f"one or two thread counts, not {choices}")
        self._choices = choices
        self._chosen = choices[0]
        self._trying = choices[0]
        self._gap = FIRST_PROBE_AFTER
        self._until_probe = FIRST_PROBE_AFTER
        self._recent: deque[float] = deque(maxlen=PROBE_TOKENS)
        self._probe: list[float] = []
        self._compared_at = float("inf")
        """The chosen count's median seconds per token at the last comparison."""

    def __repr__(self) -> str:
        return f"DecodeThreads(choices={self._choices}, chosen={self._chosen}, next comparison in {self._until_probe})"

    @property
    def now(self) -> int:
        """The count to decode the next token with."""
        return self._trying

    def observed(self, seconds: float) -> None:
        """One token was decoded with `now` threads in `seconds` (from one token's delivery to the next's)."""
        if len(self._choices) == 1:
            return
        if self._trying != self._chosen:
            self._probe.append(seconds)
            if len(self._probe) == PROBE_TOKENS:
                self._compare()
            return
        self._recent.append(seconds)
        self._until_probe -= 1
        if len(self._recent) < PROBE_TOKENS:
            return
        if self._until_probe <= 0 or median(self._recent) > SLOWDOWN * self._compared_at:
            self._trying = next(count for count in self._choices if count != self._chosen)

    def _compare(self) -> None:
        # Medians: one token delayed by a page fault or a GC pause must not decide.
        tried, kept = median(self._probe), median(self._recent)
        if tried < kept:
            self._chosen = self._trying
            self._gap = FIRST_PROBE_AFTER
            self._recent.clear()
            self._recent.extend(self._probe)
            self._compared_at = tried
        else:
            self._gap = min(self._gap * 2, LONGEST_GAP)
            self._compared_at = kept
        self._trying = self._chosen
        self._until_probe = self._gap
        self._probe.clear()
