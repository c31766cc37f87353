"""Token-aware chunking with overlap that keeps the original text and its offsets.

A section is cut into units (a word with its trailing whitespace; each CJK
character on its own, since those scripts have no spaces), each unit is
measured in tokens of the embedding model's tokenizer, and units are packed
into chunks of at most `max_tokens` tokens. Consecutive chunks share about
`overlap_tokens` tokens so a fact cut at a boundary is whole in one of them.
Chunk text is a slice of the source text, never a decode of token ids, so
case, punctuation and layout survive for the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from relaychain.agents.documents.loaders import Section

__all__ = ["Chunk", "Tokenizer", "chunk_sections"]


class Tokenizer(Protocol):
    def count(self, text: str) -> int:
        """Tokens in `text` without special tokens."""
        ...


@dataclass(frozen=True)
class Chunk:
    text: str
    source: str
    location: str
    title: str
    start: int
    end: int
    """Character offsets of `text` in the file's text (pdf: in the page's text)."""

    @property
    def embedding_text(self) -> str:
        """What gets embedded: the text, headed by the document title and location when it lacks them."""
        header = " — ".join(part for part in (self.title, self.location) if part and part not in self.text)
        return f"{header}\n{self.text}" if header else self.text


_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_UNIT = re.compile(rf"[{_CJK}]\s*|[^\s{_CJK}]+\s*|\s+")


def chunk_sections(
    sections: Sequence[Section],
    source: str,
    tokenizer: Tokenizer,
    *,
    max_tokens: int = 200,
    overlap_tokens: int = 40,
) -> list[Chunk]:
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and below max_tokens")
    count = lru_cache(maxsize=65536)(tokenizer.count)
    chunks: list[Chunk] = []
    for section in sections:
        units = list(_units(section.text, count, max_tokens))
        for first, last in _windows([tokens for _, _, tokens in units], max_tokens, overlap_tokens):
            start, end = units[first][0], units[last][1]
            text = section.text[start:end].strip()
            if not text:
                continue
            lead = len(section.text[start:end]) - len(section.text[start:end].lstrip())
            begin = section.offset + start + lead
            chunks.append(
                Chunk(
                    text=text,
                    source=source,
                    location=section.location,
                    title=section.title,
                    start=begin,
                    end=begin + len(text),
                )
            )
    return chunks


def _units(text: str, count: Callable[[str], int], max_tokens: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) of each unit; a unit longer than a chunk (a URL, a base64 blob) is split by characters."""
    for match in _UNIT.finditer(text):
        start, end = match.span()
        tokens = count(match.group().strip()) if match.group().strip() else 0
        if tokens <= max_tokens:
            yield start, end, tokens
            continue
        step = max(1, (end - start) * max_tokens // (tokens * 2))
        for piece in range(start, end, step):
            stop = min(end, piece + step)
            yield piece, stop, count(text[piece:stop].strip()) if text[piece:stop].strip() else 0


def _windows(tokens: Sequence[int], max_tokens: int, overlap_tokens: int) -> Iterator[tuple[int, int]]:
    """Inclusive unit ranges packing at most `max_tokens` each, the next starting `overlap_tokens` back."""
    first = 0
    while first < len(tokens):
        used = 0
        last = first
        while last < len(tokens) and used + tokens[last] <= max_tokens:
            used += tokens[last]
            last += 1
        last = max(last - 1, first)  # a single unit always fits: _units splits bigger ones
        yield first, last
        if last + 1 >= len(tokens):
            return
        # Step back over the last units while they fit the overlap; always move forward.
        next_first = last + 1
        kept = 0
        while next_first - 1 > first and kept + tokens[next_first - 1] <= overlap_tokens:
            next_first -= 1
            kept += tokens[next_first]
        first = next_first
