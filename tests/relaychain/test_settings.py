"""One settings model: the YAML file, environment overrides, and errors that name the bad field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from relaychain.settings import DEFAULT_CONFIG, ConfigError, load_settings


def copy_defaults(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONFIG.parent, target)
    return target / "config.yaml"


def edit(path: Path, change: dict) -> None:
    data = yaml.safe_load(path.read_text())
    for dotted, value in change.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def test_shipped_default_loads_with_its_models_and_businesses() -> None:
    settings = load_settings()
    assert {"gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "gpt-4", "smollm2-135m", "chatglm-6b"} <= set(settings.app.models)
    assert {"ops_push", "personalized_push", "weibo_regional", "product_review", "news_comment", "car_blog"} == set(
        settings.app.businesses
    )
    assert settings.app.models["ernie-4.0-8k"].price.currency == "CNY"
    assert settings.bus == "memory://"


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RELAYCHAIN_BUS", "kafka://broker:9092")
    monkeypatch.setenv("RELAYCHAIN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RELAYCHAIN_OBSERVABILITY__EXPORTERS", '["console", "otlp-http"]')
    monkeypatch.setenv("RELAYCHAIN_RUNTIME__MAX_IN_FLIGHT", "7")
    settings = load_settings()
    assert settings.bus == "kafka://broker:9092"
    assert settings.data_dir == tmp_path
    assert settings.observability.exporters == ("console", "otlp-http")
    assert settings.runtime.max_in_flight == 7


def test_config_file_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = copy_defaults(tmp_path)
    edit(config, {"runtime.max_in_flight": 3})
    monkeypatch.setenv("RELAYCHAIN_CONFIG", str(config))
    assert load_settings().runtime.max_in_flight == 3


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"businesses.car_blog.default_model": "gpt-4"}, "default_model"),
        ({"models.gpt-4o.price.input_per_million": "-1"}, "models.gpt-4o.price.input_per_million"),
        ({"businesses.ops_push.allowed_models": ["smollm2-135m", "nope"]}, "businesses.ops_push.allowed_models"),
        (
            {"businesses.ops_push.templates": {"default": "templates/missing.j2"}},
            "businesses.ops_push.templates.default",
        ),
        ({"businesses.ops_push.variables": ["campaign"]}, "undeclared variables ['audience']"),
        ({"runtime.max_in_flight": 0}, "runtime.max_in_flight"),
    ],
)
def test_a_bad_config_stops_start_up_naming_the_field(tmp_path: Path, change: dict, named: str) -> None:
    config = copy_defaults(tmp_path)
    edit(config, change)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(config) in str(caught.value) and named in str(caught.value)


def test_unreadable_and_malformed_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)
