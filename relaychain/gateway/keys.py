"""API keys: each maps to a tenant id; only their sha256 digests are kept, compared in constant time.

Keys come from `RELAYCHAIN_GATEWAY_KEYS` (`tenant=key` pairs separated by
commas) and/or a directory (`RELAYCHAIN_GATEWAY_KEYS_DIR`), the shape a
Kubernetes Secret mounted as a volume has: one file per tenant, named by the
tenant id, holding its key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["KEYS_DIR_ENV", "KEYS_ENV", "ApiKeys", "KeyError_"]

KEYS_ENV = "RELAYCHAIN_GATEWAY_KEYS"
KEYS_DIR_ENV = "RELAYCHAIN_GATEWAY_KEYS_DIR"


class KeyError_(ValueError):
    """A key definition that cannot be used (empty key, malformed pair)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, tenant_keys: Mapping[str, str]) -> None:
        for tenant, key in tenant_keys.items():
            if not tenant or not key:
                raise KeyError_(f"API key of tenant {tenant!r} is empty")
        self._digests = [(_digest(key), tenant) for tenant, key in tenant_keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def tenant_of(self, presented: str) -> str | None:
        """The tenant whose key this is, else None; every digest is compared, so timing tells nothing."""
        digest = _digest(presented)
        found: str | None = None
        for known, tenant in self._digests:
            if hmac.compare_digest(known, digest):
                found = tenant
        return found

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ApiKeys:
        env = os.environ if environ is None else environ
        pairs: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in env.get(KEYS_ENV, "").split(","))):
            tenant, sep, key = item.partition("=")
            if not sep:
                raise KeyError_(f"{KEYS_ENV}: {tenant!r} is not a tenant=key pair")
            pairs[tenant.strip()] = key.strip()
        directory = env.get(KEYS_DIR_ENV)
        if directory:
            for path in sorted(Path(directory).iterdir()):
                # Kubernetes mounts a Secret's keys as files beside `..data` links; only plain names are tenants.
                if path.is_file() and not path.name.startswith("."):
                    pairs[path.name] = path.read_text(encoding="utf-8").strip()
        return cls(pairs)
