"""API keys from the environment and from a mounted Secret directory, kept as digests."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychain.gateway.keys import KEYS_DIR_ENV, KEYS_ENV, ApiKeys, KeyError_


def test_keys_from_env_and_secret_directory(tmp_path: Path) -> None:
    (tmp_path / "beta").write_text("k-beta\n")
    (tmp_path / "..data").mkdir()  # what a Secret volume holds beside the keys
    keys = ApiKeys.from_environment({KEYS_ENV: "acme=k-acme, gamma=k-gamma", KEYS_DIR_ENV: str(tmp_path)})
    assert keys.enabled
    assert [keys.tenant_of(k) for k in ("k-acme", "k-beta", "k-gamma", "k-nope", "")] == [
        "acme",
        "beta",
        "gamma",
        None,
        None,
    ]
    assert "k-acme" not in repr(vars(keys))


def test_no_keys_and_bad_pairs() -> None:
    assert not ApiKeys.from_environment({}).enabled
    with pytest.raises(KeyError_):
        ApiKeys.from_environment({KEYS_ENV: "just-a-key"})
    with pytest.raises(KeyError_):
        ApiKeys({"acme": ""})
