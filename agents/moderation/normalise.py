"""Text normalisation for sensitive-word matching, with a map back to the original text.

Evasions this undoes, character by character:

- full-width letters (`ｓｅｘ`, NFKC) and case (case-fold);
- traditional Chinese (`色情` written `色情`, `發票` for `发票`): every
  ideograph goes through OpenCC's `t2s` one character at a time, so one
  original character stays one normalised character;
- look-alike letters from other scripts (Cyrillic `ѕех`, Greek `ροrn`): the
  Unicode confusables table (UTS #39, as shipped by `confusable-homoglyphs`)
  folds a non-Latin letter to the ASCII letter it imitates;
- diacritics (`sèx`, `pörn`): NFKD, then the combining marks of the Latin,
  Greek and Cyrillic blocks are dropped (Japanese voicing marks are kept);
- invisible characters (zero-width space and joiner, variation selectors,
  tag characters, combining marks standing alone) are dropped everywhere;
- symbols and emoji slipped inside a word (`se💋x`, `色❤情`): dropped where
  they sit between two letters or two ideographs;
- separators slipped between characters (`敏 感`, `s.e.x`, `s-e-x`).
  Separators are removed only where they cannot be meaningful: between two
  CJK ideographs (Chinese does not put spaces or dots between the characters
  of a word) and inside a chain of single letters (`s.e.x`); elsewhere they
  stay, so `this ex` never becomes `thisex`, `www.sex.com` keeps its words
  and whole-word checks still see word boundaries.

Every normalised index maps back to the offset of the original character it
came from, so matches are reported (and masked) in the original text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import opencc

__all__ = ["NormalisedText", "normalise", "normalise_term"]

# Diacritics of Latin, Greek and Cyrillic letters; Japanese voicing marks (U+3099) are not among them.
_COMBINING = "\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_INVISIBLE = (
    "\u00ad\u034f\u180b-\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u206a-\u206f\ufe00-\ufe0f\ufeff"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
_ZERO_WIDTH = _INVISIBLE + _COMBINING
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Symbols and emoji: nobody writes them inside a word except to split it.
_SYMBOLS = (
    "#$%&*+<=>@^~|\u00a2-\u00a9\u00ae-\u00b1\u00b4\u00b7\u00d7\u00f7\u2020-\u2022\u2030-\u205e"
    "\u2100-\u2bff\u3012\u3013\u3020\u3200-\u33ff"
    "\U0001f000-\U0001faff"
)
# Separators that carry no meaning inside a word; sentence punctuation (，。) is not one of them.
_SLIPPED = rf"[\s{_ZERO_WIDTH}.\-_*·•|/\\~+'`:．－＿＊・～｜／]"
_SLIPPED_SYMBOL = rf"[{_SYMBOLS}{_ZERO_WIDTH}]"

_ALWAYS_DROPPED = re.compile(rf"[{_ZERO_WIDTH}]|(?<=\s)\s+")
_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])(?:{_SLIPPED}|{_SLIPPED_SYMBOL}){{1,3}}(?=[{_CJK}])")
_INSIDE_WORD = re.compile(rf"(?<=[^\W_]){_SLIPPED_SYMBOL}{{1,3}}(?=[^\W_])")
# A chain starts at a letter that is not the end of a word, even one split by slipped symbols (`se💋x b`).
_LETTER_CHAIN = re.compile(
    rf"(?<![^\W_])(?<![^\W_]{_SLIPPED_SYMBOL})(?<![^\W_]{_SLIPPED_SYMBOL}{_SLIPPED_SYMBOL})"
    rf"[^\W_](?:{_SLIPPED}{{1,3}}[^\W_](?![^\W_]))+"
)
_LETTER = re.compile(r"[^\W_]")
_ANY_CJK = re.compile(rf"[{_CJK}]")
_ANY_SLIPPED_SYMBOL = re.compile(_SLIPPED_SYMBOL)


_STRIP_MARKS = re.compile(rf"[{_COMBINING}]")
_T2S = opencc.OpenCC("t2s.json")


@cache
def _confusables() -> dict[str, str]:
    """Non-Latin letter -> the ASCII letter or digit it imitates, from the UTS #39 confusables data."""
    data = json.loads(files("confusable_homoglyphs").joinpath("confusables.json").read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for char, homoglyphs in data.items():
        if len(char) != 1 or not char.isalpha() or char.isascii() or "LATIN" in unicodedata.name(char, "LATIN"):
            continue
        latin = next((h["c"] for h in homoglyphs if len(h["c"]) == 1 and h["c"].isascii() and h["c"].isalnum()), None)
        if latin is not None:
            table[char] = latin
    return table


def _fold_char(char: str) -> str:
    """One original character in matching form: possibly empty, possibly longer (`ß` -> `ss`)."""
    if char.isspace():
        return " "
    stripped = _STRIP_MARKS.sub("", unicodedata.normalize("NFKD", char))
    composed = unicodedata.normalize("NFKC", stripped)
    confusables = _confusables()
    folded = "".join(confusables.get(c, c) for c in composed).casefold()
    if any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in folded):
        # One character at a time: OpenCC's phrase rules could change the length and lose the offsets.
        folded = "".join(converted if len(converted := _T2S.convert(c)) == 1 else c for c in folded)
    return folded


class _FoldTable(dict[int, str]):
    """str.translate table built from `_fold_char`, filled on demand (a text meets few distinct characters)."""

    def __missing__(self, codepoint: int) -> str:
        folded = _fold_char(chr(codepoint))
        self[codepoint] = folded
        return folded


_FOLD = _FoldTable()


@cache
def _ascii_fold() -> bytes:
    """`_FOLD` of the ASCII characters as a `bytes.translate` table."""
    folded = [_FOLD[code] for code in range(128)]
    assert all(len(char) == 1 and char.isascii() for char in folded)
    return "".join(folded).encode("ascii") + bytes(range(128, 256))


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
    if not original.isascii():
        return _normalised(original, _dropped_ranges_any(original))
    dropped = _dropped_ranges_ascii(original)
    if dropped:
        return _normalised(original, dropped)
    # Most text: nothing dropped, and every ASCII character folds to one ASCII character (a byte table).
    folded = original.encode("ascii").translate(_ascii_fold()).decode("ascii")
    return NormalisedText(original, folded, [_Segment(0, 0, None)])


def _normalised(original: str, dropped: list[tuple[int, int]]) -> NormalisedText:
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


def _dropped_ranges_any(text: str) -> list[tuple[int, int]]:
    ranges = [m.span() for m in _ALWAYS_DROPPED.finditer(text)]
    # Each of these needs an ideograph or a symbol to match; one plain scan for that character is a
    # fraction of the pattern's own (lookarounds tried at every position), and most texts have neither.
    if _ANY_CJK.search(text):
        ranges += [m.span() for m in _BETWEEN_CJK.finditer(text)]
    if _ANY_SLIPPED_SYMBOL.search(text):
        ranges += [m.span() for m in _INSIDE_WORD.finditer(text)]
    ranges += _letter_chain_separators(text)
    return _merged(ranges)


def _ascii_part(char_class: str) -> str:
    """The ASCII members of a one-character pattern as a class of their own, much faster to scan with."""
    pattern = re.compile(char_class)
    return "[" + "".join(re.escape(chr(code)) for code in range(128) if pattern.fullmatch(chr(code))) + "]"


# What the patterns above can still match in pure-ASCII text (no invisible character, no ideograph exists
# there): runs of whitespace, ASCII symbols inside a word, and a letter chain, which needs two letters standing
# alone with one to three separators between them (a single-letter word such as English "a" is not enough).
# These scans look for ASCII characters only, and the first has no lookbehind to try at every position.
_ASCII_SPACE_RUN = re.compile(r"\s\s+")
_ASCII_SYMBOL = re.compile(_ascii_part(_SLIPPED_SYMBOL))
_ASCII_LETTER = _ascii_part(r"[^\W_]")
_ASCII_CHAIN = re.compile(
    rf"(?<!{_ASCII_LETTER}){_ASCII_LETTER}{_ascii_part(_SLIPPED)}{{1,3}}{_ASCII_LETTER}(?!{_ASCII_LETTER})"
)


def _dropped_ranges_ascii(text: str) -> list[tuple[int, int]]:
    """`_dropped_ranges_any` of pure-ASCII text: the same ranges by fewer scans (tests compare the two)."""
    ranges = [(m.start() + 1, m.end()) for m in _ASCII_SPACE_RUN.finditer(text)]
    if _ASCII_SYMBOL.search(text):
        ranges += [m.span() for m in _INSIDE_WORD.finditer(text)]
    if _ASCII_CHAIN.search(text):
        ranges += _letter_chain_separators(text)
    return _merged(ranges) if ranges else ranges


def _letter_chain_separators(text: str) -> list[tuple[int, int]]:
    ranges = []
    for chain in _LETTER_CHAIN.finditer(text):
        start = chain.start()
        for index in range(start, chain.end()):
            if not _LETTER.match(text, index):
                ranges.append((index, index + 1))
    return ranges


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
