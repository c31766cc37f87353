"""One lock for importing from transformers and loading through it, shared by every thread that does.

transformers resolves its names lazily, importing a model's modules on first
use. Two threads doing that at once (the retriever indexing in a thread while
another agent's warm-up loads a tokenizer) can meet in Python's import-deadlock
avoidance, which hands one of them a half-initialised module:
"cannot import name 'AutoModel' from 'transformers'" (seen in `bench/gateway.py`
at start-up). Under this lock the imports and `from_pretrained` calls run one
at a time; they hold the GIL for most of their work anyway.
"""

from __future__ import annotations

import threading

__all__ = ["TRANSFORMERS_LOCK"]

TRANSFORMERS_LOCK = threading.RLock()
