"""Lexical terms and BM25 for hybrid search over Chinese and English.

Latin-script text splits into words; Chinese has no spaces, so each run of
ideographs becomes its character bigrams (a lone ideograph stays a unigram).
Bigrams need no dictionary and recall any word a query shares with a chunk;
BM25's IDF keeps frequent pairs from dominating. Everything is NFKC and
case-folded, and traditional characters fold to simplified (OpenCC `t2s`),
so `電池` finds `电池`.

BM25 uses the usual k1 = 1.2, b = 0.75; the pgvector index computes the same
formula in SQL (`vectors.PgVectorIndex.search_lexical`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import cache

import numpy as np

__all__ = ["K1", "B", "Bm25", "idf", "terms"]

K1 = 1.2
B = 0.75

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_IDEOGRAPHS = re.compile(rf"[{_CJK}]")


@cache
def _t2s() -> object:
    import opencc

    return opencc.OpenCC("t2s.json")


def terms(text: str) -> list[str]:
    """The lexical terms of `text`, in order: words, and bigrams of Chinese runs."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if _IDEOGRAPHS.search(folded):
        folded = _t2s().convert(folded)  # type: ignore[attr-defined]
    found: list[str] = []
    for token in _TOKEN.findall(folded):
        if _IDEOGRAPHS.match(token):
            found.extend([token] if len(token) == 1 else [token[i : i + 2] for i in range(len(token) - 1)])
        else:
            found.append(token)
    return found


def idf(documents: int, frequency: int) -> float:
    return math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5))


class Bm25:
    """Postings over a fixed list of documents (each a list of terms); rebuilt when the documents change."""

    def __init__(self, documents: Sequence[Sequence[str]]) -> None:
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for row, document in enumerate(documents):
            for term, count in Counter(document).items():
                rows, counts = postings.setdefault(term, ([], []))
                rows.append(row)
                counts.append(count)
        self._postings = {
            term: (np.array(rows, dtype=np.int64), np.array(counts, dtype=np.float32))
            for term, (rows, counts) in postings.items()
        }
        self._lengths = np.array([len(document) for document in documents], dtype=np.float32)
        self._documents = len(documents)
        average = float(self._lengths.mean()) if self._documents else 0.0
        self._norm = K1 * (1 - B + B * self._lengths / max(average, 1.0))

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for `query` (0 where no term is shared)."""
        scores = np.zeros(self._documents, dtype=np.float32)
        for term, weight in Counter(query).items():
            posting = self._postings.get(term)
            if posting is None:
                continue
            rows, counts = posting
            scores[rows] += weight * idf(self._documents, len(rows)) * counts * (K1 + 1) / (counts + self._norm[rows])
        return scores
