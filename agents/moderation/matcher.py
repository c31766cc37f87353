"""One pass over the text for every listed term, whatever the list size (Aho-Corasick).

Terms and text go through the same normalisation (see `normalise`); matches
come back with offsets in the original text. A term that starts or ends with
a Latin-script letter or digit matches whole words only (`ass` does not hit
`class`), CJK terms match anywhere. An allowlist occurrence (a longer
innocent term such as `杀人鲸`, killer whale) suppresses every match that
lies inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import ahocorasick_rs

from relaychain.agents.moderation.normalise import NormalisedText, normalise, normalise_term

__all__ = ["Match", "Matcher"]

_CJK_START = 0x2E80


@dataclass(frozen=True)
class Match:
    """A listed term found in the text; `start`/`end` index the original text."""

    term: str
    category: str
    start: int
    end: int


class Matcher:
    """Built once per list version (building is the slow part); `find` is one pass and thread-safe."""

    def __init__(self, terms: Mapping[str, str], allowlist: Iterable[str] = ()) -> None:
        """`terms`: term -> category; a term listed twice keeps the category given last."""
        categories: dict[str, str] = {}
        for term, category in terms.items():
            normalised = normalise_term(term)
            if normalised:
                categories[normalised] = category
        self._terms = list(categories)
        self._categories = [categories[term] for term in self._terms]
        self._bounds = [(_is_word_char(term[0]), _is_word_char(term[-1])) for term in self._terms]
        self._automaton = _automaton(self._terms)
        allowed = list(dict.fromkeys(t for t in (normalise_term(a) for a in allowlist) if t))
        self._allowlist = _automaton(allowed)

    def __len__(self) -> int:
        return len(self._terms)

    def find(self, text: str) -> list[Match]:
        """Non-overlapping matches, leftmost first, the longest where two start together."""
        if self._automaton is None or not text:
            return []
        normalised = normalise(text)
        haystack = normalised.text
        allowed = self._allowed_spans(haystack)
        candidates = []
        for index, start, end in self._automaton.find_matches_as_indexes(haystack, overlapping=True):
            if not _on_word_boundaries(haystack, start, end, *self._bounds[index]):
                continue
            if any(a_start <= start and end <= a_end for a_start, a_end in allowed):
                continue
            candidates.append((start, end, index))
        return _non_overlapping(candidates, normalised, self._terms, self._categories)

    def _allowed_spans(self, haystack: str) -> list[tuple[int, int]]:
        if self._allowlist is None:
            return []
        return [(start, end) for _, start, end in self._allowlist.find_matches_as_indexes(haystack, overlapping=True)]


def _automaton(patterns: list[str]) -> ahocorasick_rs.AhoCorasick | None:
    if not patterns:
        return None
    return ahocorasick_rs.AhoCorasick(patterns, matchkind=ahocorasick_rs.MATCHKIND_STANDARD)


def _is_word_char(char: str) -> bool:
    """Letters and digits of alphabetic scripts; CJK characters are not word characters here."""
    return char.isalnum() and ord(char) < _CJK_START


def _on_word_boundaries(haystack: str, start: int, end: int, check_left: bool, check_right: bool) -> bool:
    """A term's Latin-script ends must not continue into a longer word (the Scunthorpe problem)."""
    if check_left and start > 0 and _is_word_char(haystack[start - 1]):
        return False
    return not (check_right and end < len(haystack) and _is_word_char(haystack[end]))


def _non_overlapping(
    candidates: list[tuple[int, int, int]], normalised: NormalisedText, terms: list[str], categories: list[str]
) -> list[Match]:
    matches: list[Match] = []
    reached = 0
    for start, end, index in sorted(candidates, key=lambda c: (c[0], c[0] - c[1])):
        if start < reached:
            continue
        reached = end
        orig_start, orig_end = normalised.span(start, end)
        matches.append(Match(terms[index], categories[index], orig_start, orig_end))
    return matches
