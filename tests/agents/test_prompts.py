"""Prompt templates: an edited file is picked up within a second, without a disk check on every render."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relaychain.agents import prompts
from relaychain.agents.prompts import PromptLibrary
from relaychain.settings import load_settings


def test_an_edited_template_is_picked_up_after_the_recheck_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "greeting.j2"
    template.write_text("Hello {{ name }}")
    library = PromptLibrary(load_settings().app, tmp_path)
    assert library.render_file("greeting.j2", {"name": "Ada"}) == "Hello Ada"

    template.write_text("Goodbye {{ name }}")
    mtime = template.stat().st_mtime + 10
    os.utime(template, (mtime, mtime))
    stats: list[str] = []
    real_getmtime = os.path.getmtime
    monkeypatch.setattr(os.path, "getmtime", lambda path: stats.append(path) or real_getmtime(path))

    assert library.render_file("greeting.j2", {"name": "Ada"}) == "Hello Ada"
    assert stats == []
    monkeypatch.setattr(prompts, "TEMPLATE_RECHECK_S", 0.0)
    assert library.render_file("greeting.j2", {"name": "Ada"}) == "Goodbye Ada"
