"""The shipped config is portable: everything it names lives beside it, so a copy in any folder works."""

from __future__ import annotations

import shutil
from pathlib import Path

from relaychain.agents.documents.walk import documents_under
from relaychain.settings import DEFAULT_CONFIG, load_settings

SPECS = Path(__file__).resolve().parents[2] / "examples" / "cars" / "specs"


def test_a_copied_config_finds_the_car_spec_sheets(tmp_path: Path) -> None:
    copy = tmp_path / "somewhere" / "else"
    shutil.copytree(DEFAULT_CONFIG.parent, copy)
    settings = load_settings(copy / "config.yaml")
    retrieval = settings.app.businesses["car_blog"].retrieval
    assert retrieval is not None and retrieval.sources is not None
    sources = settings.resolve(retrieval.sources)
    assert sources.is_dir() and sources.is_relative_to(copy)
    assert sorted(p.name for p in sources.iterdir()) == sorted(p.name for p in SPECS.iterdir())


def test_no_path_in_the_shipped_config_leaves_its_folder() -> None:
    """A `..` would point into a checkout, which neither a wheel install nor the image has."""
    assert "../" not in DEFAULT_CONFIG.read_text(encoding="utf-8")


def test_the_retriever_reads_every_shipped_spec_sheet() -> None:
    """In a checkout the sheets are reached through a link (relaychain/defaults/specs); the walk must follow it."""
    settings = load_settings()
    retrieval = settings.app.businesses["car_blog"].retrieval
    assert retrieval is not None and retrieval.sources is not None
    found = documents_under(settings.resolve(retrieval.sources), max_file_bytes=retrieval.max_file_bytes)
    assert not found.skipped and sorted(found.files) == sorted(p.name for p in SPECS.iterdir())
