"""Which files of a source folder are read for indexing: regular files inside the folder, up to a size.

A folder is trusted only for what lies inside it. A symlink whose target is
outside the folder (`ln -s /etc/passwd docs/x.txt`) is skipped, so indexing
and search never expose files the folder's owner did not put there; a
symlink to a file inside the folder is read like that file. Symlinked
folders are not descended (their files, when inside, are found under their
own path). Anything that is not a regular file (a FIFO would block the
reader) is skipped, and so is a file larger than `max_file_bytes`, which
would otherwise be held in memory several times over while it is parsed and
chunked. Every skip carries its reason.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from relaychain.agents.documents.loaders import LOADERS

__all__ = ["DocumentFiles", "documents_under"]


@dataclass
class DocumentFiles:
    """Files to read, by their path relative to the folder; and the skipped ones with the reason."""

    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def documents_under(root: Path, *, max_file_bytes: int) -> DocumentFiles:
    """Blocking (it stats every file): run it in a thread."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    real_root = root.resolve()
    found = DocumentFiles()
    for folder, subfolders, names in os.walk(root, followlinks=False):
        subfolders.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if name.startswith(".") or path.suffix.lower() not in LOADERS:
                continue
            source = path.relative_to(root).as_posix()
            target, reason = _checked(path, real_root, max_file_bytes)
            if reason is None:
                found.files[source] = target
            else:
                found.skipped[source] = reason
    return found


def _checked(path: Path, real_root: Path, max_file_bytes: int) -> tuple[Path, str | None]:
    """The real file to read (links resolved, so what was checked is what gets opened), or why not."""
    try:
        target = path.resolve(strict=True)
        info = target.stat()
    except (OSError, RuntimeError) as error:  # a dangling link, a link loop
        return path, f"skipped: cannot follow ({error})"
    if not target.is_relative_to(real_root):
        return target, f"skipped: a link to {target}, outside the folder"
    if not stat.S_ISREG(info.st_mode):
        return target, "skipped: not a regular file"
    if info.st_size > max_file_bytes:
        return target, f"skipped: {info.st_size} bytes, over the limit of {max_file_bytes} (retrieval.max_file_bytes)"
    return target, None
