"""Documents for retrieval: loaders, chunking, embeddings, incremental indexing."""

from relaychain.agents.documents.chunking import Chunk, Tokenizer, chunk_sections
from relaychain.agents.documents.embeddings import (
    Embedder,
    TransformerEmbedder,
    default_model_path,
)
from relaychain.agents.documents.indexer import DocumentIndexer, IndexReport
from relaychain.agents.documents.loaders import LoaderError, Section, load_file

__all__ = [
    "Chunk",
    "DocumentIndexer",
    "Embedder",
    "IndexReport",
    "LoaderError",
    "Section",
    "Tokenizer",
    "TransformerEmbedder",
    "chunk_sections",
    "default_model_path",
    "load_file",
]
