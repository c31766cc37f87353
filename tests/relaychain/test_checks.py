"""Start-up checks: a slip step nobody handles stops start-up, naming the business and the step."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychain.settings import ConfigError, load_settings
from tests.relaychain.test_settings import copy_defaults, edit


def test_a_step_no_agent_handles_is_refused_naming_business_and_step(tmp_path: Path) -> None:
    config = copy_defaults(tmp_path)
    edit(config, {"businesses.ops_push.steps": ["moderate.input", "genrate", "format"]})
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "businesses.ops_push.steps" in str(caught.value)
    assert "'genrate'" in str(caught.value)


def test_a_step_of_your_own_passes_once_a_route_sends_it_somewhere(tmp_path: Path) -> None:
    config = copy_defaults(tmp_path)
    edit(config, {"businesses.ops_push.steps": ["moderate.input", "translate", "generate", "format"]})
    edit(config, {"runtime": {"routes": {"translate": "my.translator"}}})
    assert load_settings(config).app.businesses["ops_push"].steps[1] == "translate"


def test_variables_of_an_included_template_must_be_declared_too(tmp_path: Path) -> None:
    config = copy_defaults(tmp_path)
    edit(config, {"businesses.car_blog.variables": []})
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    # `car` is read only by templates/car_blog/brief.j2, which every chain step includes.
    assert "businesses.car_blog.chain.middle" in str(caught.value)
    assert "undeclared variables ['car']" in str(caught.value)


def test_an_include_of_a_missing_template_is_refused_naming_it(tmp_path: Path) -> None:
    config = copy_defaults(tmp_path)
    (config.parent / "templates/car_blog/brief.j2").unlink()
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "templates/car_blog/opening.j2 includes templates/car_blog/brief.j2, which is not found" in str(caught.value)
