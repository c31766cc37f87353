"""`relaychain index DIR --index NAME` and `relaychain search NAME "query"`.

Indexes live in PostgreSQL (pgvector) when a DSN is configured, else under
`<data_dir>/indexes/<NAME>/` as a numpy matrix. Re-running `index` on the
same folder embeds only new and changed files and drops deleted ones.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from relaychain.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from relaychain.agents.documents.indexer import IndexReport

__all__ = ["index", "search"]


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(f"bad config: {exc}") from None


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
def index(directory: Path, name: str, model_path: Path | None, postgres_dsn: str | None) -> None:
    """Index the pdf, md and txt files under DIRECTORY; unchanged files are skipped."""
    settings = _settings()
    report = asyncio.run(_index(settings, directory, name, model_path, postgres_dsn))
    click.echo(
        f"{name}: {len(report.indexed)} indexed, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed, {len(report.failed)} failed; {report.chunks_embedded} chunks embedded"
    )
    for source, reason in report.failed.items():
        click.echo(f"  failed {source}: {reason}", err=True)


async def _index(
    settings: Settings, directory: Path, name: str, model_path: Path | None, postgres_dsn: str | None
) -> IndexReport:
    from tqdm import tqdm

    from relaychain.agents.documents.embeddings import TransformerEmbedder
    from relaychain.agents.documents.indexer import DocumentIndexer
    from relaychain.stores import open_index

    embedder = await TransformerEmbedder.load(model_path)
    store = open_index(settings, name, embedder.dim, postgres_dsn)
    files = sum(
        1 for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in {".pdf", ".md", ".markdown", ".txt"}
    )
    try:
        with tqdm(total=files, unit="file", desc=f"indexing {name}") as bar:
            return await DocumentIndexer(store, embedder).index_directory(
                directory, on_file=lambda source: (bar.set_postfix_str(source[-40:]), bar.update())
            )
    finally:
        await store.close()
        embedder.close()


@click.command()
@click.argument("name")
@click.argument("query")
@click.option("-k", "--top-k", default=3, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--model", "model_path", type=click.Path(exists=True, path_type=Path), help="The encoder the index was built with."
)
@click.option("--postgres", "postgres_dsn", metavar="DSN", help="Search pgvector (else settings, else numpy).")
def search(name: str, query: str, top_k: int, model_path: Path | None, postgres_dsn: str | None) -> None:
    """Print the top-k chunks of index NAME for QUERY, with scores and sources."""
    settings = _settings()
    if not (postgres_dsn or settings.postgres_dsn) and not (settings.data_dir / "indexes" / name).exists():
        raise click.ClickException(f"no index {name!r} (run `relaychain index DIR --index {name}` first)")
    for rank, (score, source, location, text) in enumerate(
        asyncio.run(_search(settings, name, query, top_k, model_path, postgres_dsn)), 1
    ):
        where = f"{source} ({location})" if location else source
        click.echo(f"{rank}. {score:.3f}  {where}")
        click.echo("   " + " ".join(text.split())[:300])


async def _search(
    settings: Settings, name: str, query: str, top_k: int, model_path: Path | None, postgres_dsn: str | None
) -> list[tuple[float, str, str, str]]:
    from relaychain.agents.documents.embeddings import TransformerEmbedder
    from relaychain.stores import open_index

    embedder = await TransformerEmbedder.load(model_path)
    store = open_index(settings, name, embedder.dim, postgres_dsn)
    try:
        (vector,) = await embedder.embed([query])
        hits = await store.search(vector, top_k)
    finally:
        await store.close()
        embedder.close()
    return [(hit.score, hit.chunk.source, hit.chunk.location, hit.chunk.text) for hit in hits]
