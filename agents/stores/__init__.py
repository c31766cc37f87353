"""Stores the agents write to: conversation history, vector indexes."""

from agents.stores.history import (
    ConversationStore,
    PostgresConversationStore,
    SqliteConversationStore,
    Summary,
    Turn,
)
from agents.stores.vectors import Hit, IndexedChunk, NumpyVectorIndex, PgVectorIndex, VectorIndex

__all__ = [
    "ConversationStore",
    "Hit",
    "IndexedChunk",
    "NumpyVectorIndex",
    "PgVectorIndex",
    "PostgresConversationStore",
    "SqliteConversationStore",
    "Summary",
    "Turn",
    "VectorIndex",
]
