"""Text normalisation for sensitive-word matching, with a map back to the original text.

Evasions this undoes: full-width letters (`ｓｅｘ`, NFKC), case (case-fold),
zero-width characters, runs of whitespace, and separators slipped between
characters (`敏 感`, `s.e.x`, `s-e-x`). Separators are removed only where
they cannot be meaningful: between two CJK ideographs (Chinese does not put
spaces or dots between the characters of a word) and inside a chain of
single letters (`s.e.x`); elsewhere they stay, so `this ex` never becomes
`thisex` and whole-word checks still see word boundaries.

Every normalised index maps back to the offset of the original character it
came from, so matches are reported (and masked) in the original text.
Normalisation is per character: a base letter followed by a combining mark
is not composed.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass

__all__ = ["NormalisedText", "normalise", "normalise_term"]

_ZERO_WIDTH = "\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Separators that carry no meaning inside a word; sentence punctuation (，。) is not one of them.
_SLIPPED = rf"[\s{_ZERO_WIDTH}.\-_*·•|/\\~+'`:．－＿＊・～｜／]"

_ALWAYS_DROPPED = re.compile(rf"[{_ZERO_WIDTH}]|(?<=\s)\s+")
_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}]){_SLIPPED}{{1,3}}(?=[{_CJK}])")
_LETTER_CHAIN = re.compile(rf"(?<![^\W_])[^\W_](?:{_SLIPPED}{{1,3}}[^\W_](?![^\W_]))+")
_LETTER = re.compile(r"[^\W_]")


class _FoldTable(dict[int, str]):
    """str.translate table: NFKC then case-fold, every whitespace to one space; filled on demand."""

    def __missing__(self, codepoint: int) -> str:
        char = chr(codepoint)
        folded = " " if char.isspace() else unicodedata.normalize("NFKC", char).casefold()
        self[codepoint] = folded
        return folded


_FOLD = _FoldTable()


@dataclass(frozen=True)
class _Segment:
    """A run of kept original characters: where it starts in both texts, and the map if lengths differ."""

    norm_start: int
    orig_start: int
    per_char: tuple[int, ...] | None


class NormalisedText:
    """The normalised form of `original` and the way back to original offsets."""

    def __init__(self, original: str, text: str, segments: list[_Segment]) -> None:
        self.original = original
        self.text = text
        self._segments = segments
        self._starts = [segment.norm_start for segment in segments]

    def to_original(self, index: int) -> int:
        """Offset in the original text of the character that produced normalised `index`."""
        segment = self._segments[bisect_right(self._starts, index) - 1]
        offset = index - segment.norm_start
        if segment.per_char is None:
            return segment.orig_start + offset
        return segment.per_char[offset]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span [start, end) covering normalised [start, end), separators inside included."""
        return self.to_original(start), self.to_original(end - 1) + 1


def normalise(original: str) -> NormalisedText:
    dropped = _dropped_ranges(original)
    pieces: list[str] = []
    segments: list[_Segment] = []
    norm_length = 0
    cursor = 0
    for drop_start, drop_end in [*dropped, (len(original), len(original))]:
        if drop_start > cursor:
            kept = original[cursor:drop_start]
            folded = kept.translate(_FOLD)
            per_char = None if len(folded) == len(kept) else _char_map(kept, cursor)
            segments.append(_Segment(norm_length, cursor, per_char))
            pieces.append(folded)
            norm_length += len(folded)
        cursor = max(cursor, drop_end)
    if not segments:
        segments.append(_Segment(0, 0, None))
    return NormalisedText(original, "".join(pieces), segments)


def normalise_term(term: str) -> str:
    """A list term in the form matched against normalised text."""
    return normalise(term.strip()).text


def _dropped_ranges(text: str) -> list[tuple[int, int]]:
    ranges = [m.span() for m in _ALWAYS_DROPPED.finditer(text)]
    ranges += [m.span() for m in _BETWEEN_CJK.finditer(text)]
    for chain in _LETTER_CHAIN.finditer(text):
        start = chain.start()
        for index in range(start, chain.end()):
            if not _LETTER.match(text, index):
                ranges.append((index, index + 1))
    return _merged(ranges)


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _char_map(kept: str, offset: int) -> tuple[int, ...]:
    """Per normalised character, its original offset (for runs where folding changed the length)."""
    return tuple(offset + index for index, char in enumerate(kept) for _ in _FOLD[ord(char)])
