"""Word-list files and the matchers built from them, reloaded when a file changes.

A list file has one term per line, optionally followed by a TAB and a
category; `#` starts a comment line, blank lines are skipped. Terms without
a category fall in `uncategorised`. Each business matches the global lists
plus its own (its own win where a term is listed twice) with its own
allowlist.

Reload without restart: at most every `check_interval_s` a lookup stats the
files; when any mtime changed, the matchers are rebuilt in a worker thread
and swapped in whole, so a lookup always sees one complete list version and
never waits for a rebuild. A file that cannot be read during a reload keeps
the previous version in service (logged without its contents).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relaychain.agents.moderation.matcher import Matcher
from relaychain.schemas.config import AppConfig

__all__ = ["UNCATEGORISED", "WordLists", "read_word_list"]

log = logging.getLogger(__name__)

UNCATEGORISED = "uncategorised"


def read_word_list(path: Path) -> dict[str, str]:
    """term -> category from one list file."""
    terms: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        term, _, category = line.partition("\t")
        if term.strip():
            terms[term.strip()] = category.strip() or UNCATEGORISED
    return terms


@dataclass(frozen=True)
class _Version:
    """One consistent set of matchers and the file mtimes they were built from."""

    matchers: dict[str, Matcher]
    mtimes: dict[Path, float]


class WordLists:
    """The matcher for each business; `await matcher(business)` on the event loop."""

    def __init__(
        self,
        config: AppConfig,
        base_dir: Path,
        *,
        check_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._base_dir = base_dir
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._version: _Version | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def files(self) -> tuple[Path, ...]:
        paths = [*self._config.moderation.lists]
        for business in self._config.businesses.values():
            paths.extend(business.moderation.lists)
        return tuple(dict.fromkeys(self._resolve(p) for p in paths))

    async def load(self) -> None:
        """Build the matchers now (start-up); a missing or unreadable file raises."""
        async with self._lock:
            self._version = await asyncio.to_thread(self._build)
            self._checked_at = self._clock()

    async def matcher(self, business: str) -> Matcher:
        if self._version is None:
            await self.load()
        elif self._clock() - self._checked_at >= self._check_interval_s and not self._lock.locked():
            await self._reload_if_changed()
        assert self._version is not None
        matcher = self._version.matchers.get(business)
        return matcher if matcher is not None else self._version.matchers[""]

    async def _reload_if_changed(self) -> None:
        async with self._lock:
            self._checked_at = self._clock()
            assert self._version is not None
            try:
                mtimes = await asyncio.to_thread(self._mtimes)
                if mtimes != self._version.mtimes:
                    self._version = await asyncio.to_thread(self._build)
                    log.info("word lists reloaded: %d files", len(mtimes))
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("word lists not reloaded, keeping the previous version: %s", type(exc).__name__)

    def _build(self) -> _Version:
        mtimes = self._mtimes()
        global_terms: dict[str, str] = {}
        for path in self._config.moderation.lists:
            global_terms.update(read_word_list(self._resolve(path)))
        matchers = {"": Matcher(global_terms)}
        for name, business in self._config.businesses.items():
            moderation = business.moderation
            if not moderation.lists and not moderation.allowlist:
                matchers[name] = matchers[""]
                continue
            terms = dict(global_terms)
            for path in moderation.lists:
                terms.update(read_word_list(self._resolve(path)))
            matchers[name] = Matcher(terms, moderation.allowlist)
        return _Version(matchers=matchers, mtimes=mtimes)

    def _mtimes(self) -> dict[Path, float]:
        return {path: path.stat().st_mtime for path in self.files}

    def _resolve(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self._base_dir / candidate
