"""`relaychain index DIR --index NAME` and `relaychain search NAME "query"`.

Indexes live in PostgreSQL (pgvector) when a DSN is configured, else under
`<data_dir>/indexes/<NAME>/` as a numpy matrix. Re-running `index` on the
same folder embeds only new and changed files and drops deleted ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from relaychain.agents.documents.walk import documents_under
from relaychain.commands.boundary import EXIT_FAILED, Failed
from relaychain.output import echo_json
from relaychain.schemas.config import DEFAULT_MAX_FILE_BYTES
from relaychain.settings import Settings, load_settings

if TYPE_CHECKING:
    from relaychain.agents.documents.indexer import IndexReport

__all__ = ["index", "search"]


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--index", "name", required=True, help="Index name, e.g. the `retrieval.index` of a business.")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, path_type=Path),
    help="Local encoder (default all-MiniLM-L6-v2).",
)
@click.option("--postgres", "postgres_dsn", metavar="DSN", help="Index into pgvector (else settings, else numpy).")
@click.option(
    "--max-file-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_FILE_BYTES,
    show_default=True,
    help="Larger files are skipped, not read (retrieval.max_file_bytes for a business's sources).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (no progress bar).")
def index(
    directory: Path, name: str, model_path: Path | None, postgres_dsn: str | None, max_file_bytes: int, as_json: bool
) -> None:
    """Index the pdf, md and txt files under DIRECTORY; unchanged files are skipped.

    Only regular files inside DIRECTORY are read: a link leading outside it, or
    a file over --max-file-bytes, is reported and left out. Exits 1 when any
    file failed or was left out, or when DIRECTORY holds no file to index.
    """
    settings = load_settings()
    found = documents_under(directory, max_file_bytes=max_file_bytes)
    if not found.files:
        for source, reason in found.skipped.items():
            click.echo(f"  failed {source}: {reason}", err=True)
        # Before loading the encoder, and without touching the index: an empty folder is more
        # likely a wrong path than a wish to drop everything the index holds.
        raise Failed(f"{directory} holds no pdf, md or txt file to index")
    report = asyncio.run(
        _index(settings, directory, name, model_path, postgres_dsn, max_file_bytes, len(found.files), not as_json)
    )
    if as_json:
        echo_json(dataclasses.asdict(report))
    else:
        click.echo(
            f"{name}: {len(report.indexed)} indexed, {len(report.unchanged)} unchanged, "
            f"{len(report.removed)} removed, {len(report.failed)} failed; {report.chunks_embedded} chunks embedded"
        )
        for source, reason in report.failed.items():
            click.echo(f"  failed {source}: {reason}", err=True)
    if report.failed:
        sys.exit(EXIT_FAILED)


async def _index(
    settings: Settings,
    directory: Path,
    name: str,
    model_path: Path | None,
    postgres_dsn: str | None,
    max_file_bytes: int,
    files: int,
    progress: bool,
) -> IndexReport:
    from tqdm import tqdm

    from relaychain.agents.documents.embedders import close_embedder, configured_or_encoder
    from relaychain.agents.documents.indexer import DocumentIndexer
    from relaychain.stores import open_index

    embedder = await configured_or_encoder(settings.app, name, settings.data_dir, model_path)
    store = open_index(settings, name, embedder.dim, postgres_dsn)
    try:
        with tqdm(total=files, unit="file", desc=f"indexing {name}", disable=not progress) as bar:

            def advance(source: str) -> None:
                bar.set_postfix_str(source[-40:])
                bar.update()

            return await DocumentIndexer(store, embedder).index_directory(
                directory, on_file=advance, max_file_bytes=max_file_bytes
            )
    finally:
        await store.close()
        await close_embedder(embedder)


@click.command()
@click.argument("name")
@click.argument("query")
@click.option("-k", "--top-k", default=3, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--model", "model_path", type=click.Path(exists=True, path_type=Path), help="The encoder the index was built with."
)
@click.option("--postgres", "postgres_dsn", metavar="DSN", help="Search pgvector (else settings, else numpy).")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as a JSON array.")
def search(name: str, query: str, top_k: int, model_path: Path | None, postgres_dsn: str | None, as_json: bool) -> None:
    """Print the top-k chunks of index NAME for QUERY, with scores and sources."""
    settings = load_settings()
    if not (postgres_dsn or settings.postgres_dsn) and not (settings.data_dir / "indexes" / name).exists():
        raise Failed(f"no index {name!r} (run `relaychain index DIR --index {name}` first)")
    hits = asyncio.run(_search(settings, name, query, top_k, model_path, postgres_dsn))
    if as_json:
        echo_json(
            [
                {"rank": rank, "score": score, "source": source, "location": location, "text": text}
                for rank, (score, source, location, text) in enumerate(hits, 1)
            ]
        )
        return
    for rank, (score, source, location, text) in enumerate(hits, 1):
        where = f"{source} ({location})" if location else source
        click.echo(f"{rank}. {score:.3f}  {where}")
        click.echo("   " + " ".join(text.split())[:300])


async def _search(
    settings: Settings, name: str, query: str, top_k: int, model_path: Path | None, postgres_dsn: str | None
) -> list[tuple[float, str, str, str]]:
    from relaychain.agents.documents.embedders import close_embedder, configured_or_encoder
    from relaychain.stores import open_index

    embedder = await configured_or_encoder(settings.app, name, settings.data_dir, model_path)
    store = open_index(settings, name, embedder.dim, postgres_dsn)
    try:
        (vector,) = await embedder.embed([query])
        hits = await store.search(vector, top_k)
    finally:
        await store.close()
        await close_embedder(embedder)
    return [(hit.score, hit.chunk.source, hit.chunk.location, hit.chunk.text) for hit in hits]
