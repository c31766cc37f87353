"""Stores the agents write to: conversation history, vector indexes."""

from agents.stores.history import (
    ConversationStore,
    PostgresConversationStore,
    SqliteConversationStore,
    Summary,
    Turn,
)

__all__ = [
    "ConversationStore",
    "PostgresConversationStore",
    "SqliteConversationStore",
    "Summary",
    "Turn",
]
