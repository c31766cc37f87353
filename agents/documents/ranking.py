"""Fusing ranked lists and grouping hits per document.

Reciprocal rank fusion (Cormack et al., 2009): a chunk scores the sum over
the rankings it appears in of 1 / (60 + rank). It needs no calibration
between BM25 scores and cosine similarities, which live on different scales.

Grouping keeps the best `per_source` chunks of each of the `top_k` best
documents, so three chunks of one long sheet cannot push every other sheet
out of the answer; documents come in the order of their best chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

from relaychain.agents.stores.vectors import Hit, IndexedChunk

__all__ = ["RRF_K", "fuse", "group_by_source"]

RRF_K = 60


def _key(chunk: IndexedChunk) -> tuple[str, str, int, int]:
    return chunk.source, chunk.location, chunk.start, chunk.end


def fuse(rankings: Sequence[Sequence[Hit]]) -> list[Hit]:
    """One ranking from several, best first, scored by reciprocal rank fusion."""
    scores: dict[tuple[str, str, int, int], float] = {}
    chunks: dict[tuple[str, str, int, int], IndexedChunk] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            key = _key(hit.chunk)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            chunks.setdefault(key, hit.chunk)
    ordered = sorted(scores, key=lambda key: -scores[key])
    return [Hit(chunk=chunks[key], score=scores[key]) for key in ordered]


def group_by_source(hits: Sequence[Hit], top_k: int, per_source: int) -> list[Hit]:
    """The best `per_source` hits of each of the `top_k` best sources, grouped, best source first."""
    groups: dict[str, list[Hit]] = {}
    for hit in hits:  # best first, so a source's first hit is its best
        group = groups.get(hit.chunk.source)
        if group is None:
            if len(groups) == top_k:
                continue
            group = groups[hit.chunk.source] = []
        if len(group) < per_source:
            group.append(hit)
    return [hit for group in groups.values() for hit in group]
