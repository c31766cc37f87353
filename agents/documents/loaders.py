"""Document loaders: a file becomes sections of text that remember where they came from.

- pdf (pypdf): one section per page, located as `page N`.
- markdown: one section per heading, the heading line kept with its text and
  located by its heading trail (`Aurora X7 > Battery`); `#` inside fenced code
  is not a heading.
- plain text: one section, the whole file.

Each section also carries `title` (the document's first heading or first
line) so a chunk cut from the middle of a long section can still be told
apart from the same passage in another document. Loaders are blocking; run
them in a thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOADERS", "LoaderError", "Section", "load_file", "load_markdown", "load_pdf", "load_text"]


@dataclass(frozen=True)
class Section:
    text: str
    location: str
    title: str
    offset: int = 0
    """Where `text` starts in the file's text (pdf: in the page's text)."""


class LoaderError(Exception):
    """A file that could not be read as the document type its name says."""


def load_text(path: Path) -> list[Section]:
    text = _read_text(path)
    return [Section(text=text, location="", title=_first_line(text) or path.stem)] if text.strip() else []


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def load_markdown(path: Path) -> list[Section]:
    text = _read_text(path)
    starts: list[tuple[int, int, str]] = []  # (offset, level, heading)
    offset = 0
    in_fence = False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _HEADING.match(line.rstrip("\r\n"))):
            starts.append((offset, len(match.group(1)), match.group(2).strip()))
        offset += len(line)
    title = next((heading for _, level, heading in starts if level == 1), None) or path.stem
    sections: list[Section] = []
    if not starts or starts[0][0] > 0:
        preamble_end = starts[0][0] if starts else len(text)
        if text[:preamble_end].strip():
            sections.append(Section(text=text[:preamble_end], location="", title=title))
    trail: list[tuple[int, str]] = []
    for index, (start, level, heading) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(text)
        trail = [(lvl, name) for lvl, name in trail if lvl < level] + [(level, heading)]
        body = text[start:end]
        if body.strip():
            sections.append(
                Section(text=body, location=" > ".join(name for _, name in trail), title=title, offset=start)
            )
    return sections


def load_pdf(path: Path) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, OSError, ValueError) as error:
        raise LoaderError(f"{path.name}: not a readable pdf ({error})") from error
    title = next((line for page in pages if (line := _first_line(page))), path.stem)
    return [
        Section(text=page, location=f"page {number}", title=title)
        for number, page in enumerate(pages, start=1)
        if page.strip()
    ]


LOADERS = {".pdf": load_pdf, ".md": load_markdown, ".markdown": load_markdown, ".txt": load_text}


def load_file(path: Path) -> list[Section]:
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoaderError(f"{path.name}: no loader for {path.suffix or 'files without a suffix'}")
    return loader(path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LoaderError(f"{path.name}: not UTF-8 text ({error})") from error


def _first_line(text: str) -> str:
    return next((line.strip().lstrip("#").strip() for line in text.splitlines() if line.strip()), "")
