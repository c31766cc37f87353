"""One settings model: the YAML config file plus environment overrides.

The file is `--config`, else `RELAYCHAIN_CONFIG`, else the shipped default.
Environment variables override its infrastructure keys: `RELAYCHAIN_BUS`,
`RELAYCHAIN_DATA_DIR`, `RELAYCHAIN_POSTGRES_DSN`, and nested ones with `__`
(`RELAYCHAIN_OBSERVABILITY__EXPORTERS='["console"]'`,
`RELAYCHAIN_KAFKA__SASL_PASSWORD=...`). Everything else in the file
(models, businesses, schemas, moderation) is the `AppConfig`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from relaychain.checks import check_app_config
from relaychain.observability.setup import ObservabilitySettings
from relaychain.schemas.config import AppConfig

DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "config.yaml"
_INFRA_KEYS = {"bus", "data_dir", "postgres_dsn", "journal_retention_days", "observability", "runtime", "kafka"}


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the bad field."""


class RuntimeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_in_flight: int = Field(default=64, gt=0)
    drain_timeout_s: float = Field(default=30.0, gt=0)
    retry_attempts: int = Field(default=4, gt=0)
    retry_base_delay_s: float = Field(default=0.2, ge=0)
    retry_max_delay_s: float = Field(default=10.0, ge=0)
    side_channel_retry_attempts: int = Field(
        default=8, gt=0, description="Attempts for usage (side-channel) events; with the delays below, 23-46 s."
    )
    side_channel_retry_base_delay_s: float = Field(default=0.5, ge=0)
    side_channel_retry_max_delay_s: float = Field(default=15.0, ge=0)
    max_event_bytes: int = Field(
        default=900 * 1024, gt=0, description="Largest encoded event; below Kafka's 1 MB message.max.bytes."
    )
    failure_publish_timeout_s: float = Field(
        default=60.0, gt=0, description="How long an Error answer and dead letter are retried before redelivery."
    )
    broker_grace_s: float = Field(
        default=10.0, gt=0, description="Readiness turns false once the broker has not answered for this long."
    )
    middlewares: list[str] = Field(
        default_factory=list, description="Your own bus middlewares as `module:Class` (built without arguments)."
    )
    loop_lag_threshold_s: float = Field(
        default=5.0, gt=0, description="Liveness fails while the event loop is this late (blocked)."
    )
    tune_gc: bool = Field(
        default=True,
        description="Once the agents are warm: freeze start-up's objects (models, indexes) out of full GC passes, "
        "and collect the young generation every 10,000 allocations instead of 700 (see relaychain/heap.py).",
    )
    health_host: str = "0.0.0.0"
    health_port: int = Field(default=8080, ge=0, lt=65536)
    answer_timeout_s: float = Field(default=600.0, gt=0)
    routes: dict[str, str] = Field(
        default_factory=dict, description="Event type or slip step -> topic, for your own agents and steps."
    )
    create_topics: bool = Field(
        default=True, description="Create missing topics at start; off where an operator (Strimzi) owns them."
    )


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "relaychain"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAYCHAIN_", env_nested_delimiter="__", frozen=True, extra="forbid")

    config_path: Path = Field(default=DEFAULT_CONFIG, exclude=True)
    bus: str = Field(default="memory://", description="memory:// or kafka://host:port[,host:port]")
    data_dir: Path = Field(default_factory=_default_data_dir)
    postgres_dsn: str | None = Field(default=None, description="Memory store and ledger in PostgreSQL when set.")
    journal_retention_days: float = Field(
        default=7, gt=0, description="How long recorded completions are kept to answer redelivered jobs unpaid."
    )
    observability: ObservabilitySettings = ObservabilitySettings()
    runtime: RuntimeSettings = RuntimeSettings()
    kafka: dict[str, Any] = Field(default_factory=dict, description="Extra KafkaSettings fields (SASL/SSL, ...).")
    app: AppConfig

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

    @property
    def config_dir(self) -> Path:
        return self.config_path.parent

    def resolve(self, relative: str) -> Path:
        """A path named in the config file, relative to that file."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.config_dir / path


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    path = Path(config or os.environ.get("RELAYCHAIN_CONFIG") or DEFAULT_CONFIG).expanduser().resolve()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    infra = {k: v for k, v in raw.items() if k in _INFRA_KEYS}
    app = {k: v for k, v in raw.items() if k not in _INFRA_KEYS}
    try:
        settings = Settings(config_path=path, app=app, **(infra | overrides))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).removeprefix('app.')}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    problems_found = check_app_config(settings)
    if problems_found:
        raise ConfigError(f"{path}: " + "; ".join(problems_found))
    return settings
