"""Stores the agents write to: conversation history, vector indexes."""

from relaychain.agents.stores.history import (
    ConversationStore,
    PostgresConversationStore,
    SqliteConversationStore,
    Summary,
    Turn,
)
from relaychain.agents.stores.ledger import (
    CostLedger,
    LedgerRow,
    PostgresLedger,
    SqliteLedger,
)
from relaychain.agents.stores.vectors import (
    Hit,
    IndexedChunk,
    NumpyVectorIndex,
    PgVectorIndex,
    VectorIndex,
)

__all__ = [
    "ConversationStore",
    "CostLedger",
    "Hit",
    "IndexedChunk",
    "LedgerRow",
    "NumpyVectorIndex",
    "PgVectorIndex",
    "PostgresConversationStore",
    "PostgresLedger",
    "SqliteConversationStore",
    "SqliteLedger",
    "Summary",
    "Turn",
    "VectorIndex",
]
