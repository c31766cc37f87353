"""Connection and consumer settings for the Kafka backend, as one pydantic model."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class KafkaSettings(BaseModel):
    """Everything `KafkaBus` needs; `from_url` builds it from `kafka://host:port[,host:port]?key=value`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: list[str] = Field(min_length=1, description="host:port of one or more brokers.")
    client_id: str = "relaychain"
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    # Off by default because Tansu answers InitProducerId with an error; turn it on
    # for Apache Kafka (and compatible brokers that support it) to drop retry duplicates.
    enable_idempotence: bool = False
    # Fixed: an output counts as delivered only once every in-sync replica has it,
    # because acknowledging the input commits its offset.
    acks: Literal["all"] = "all"
    # Every hop awaits its output's acknowledgement, so a linger is paid per hop while the producer is idle.
    # Under load records batch without it: aiokafka sends one produce request per broker at a time, and what
    # arrives meanwhile goes into the next. bench/bus.py (throughput): 0, 1 and 5 ms alike; bench/pipeline.py
    # on Kafka (64 requests in flight, 9 hops each): 269/193/272 req/s at 0 against 201/253/174 at 5.
    linger_ms: int = Field(default=0, ge=0)
    max_batch_bytes: int = Field(
        default=256 * 1024,
        gt=0,
        description="Largest batch of records per partition in one produce request. aiokafka keeps one open batch"
        " per partition and makes every publish wait while it is full; at its 16 KB default, seven busy agents"
        " spent a fifth of their CPU in those waits.",
    )
    request_timeout_ms: int = Field(default=30_000, gt=0)

    commit_interval_s: float = Field(default=0.5, gt=0, description="How often acknowledged offsets are committed.")
    session_timeout_ms: int = Field(default=10_000, gt=0)
    heartbeat_interval_ms: int = Field(default=1_000, gt=0)
    max_poll_interval_ms: int = Field(default=300_000, gt=0)
    fetch_max_records: int = Field(default=500, gt=0)
    fetch_max_wait_ms: int = Field(
        default=20,
        gt=0,
        description="Longest a fetch waits for data. Some brokers (Tansu) hold a fetch this long even when data"
        " arrives, which then is the latency of every hop; aiokafka's 500 ms default made it ~250 ms per hop.",
    )
    join_timeout_s: float = Field(default=60.0, gt=0, description="How long subscribe waits for the first assignment.")
    revoke_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a rebalance waits for in-flight handlers of revoked partitions."
    )

    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="Deliveries of a message whose handler raises; after the last the member stops consuming.",
    )
    connection_grace_s: float = Field(
        default=10.0, gt=0, description="How long without a broker round trip before `connected` turns false."
    )
    probe_interval_s: float = Field(default=2.0, gt=0, description="How often the broker is asked for metadata.")

    default_partitions: int = Field(default=4, ge=1, description="Partitions of topics created on first use.")
    default_replication_factor: int = Field(default=1, ge=1)

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> KafkaSettings:
        """`kafka://b1:9092,b2:9092?security_protocol=SASL_SSL&sasl_mechanism=PLAIN`; credentials may be
        given as `kafka://user:password@host:port`. Keyword overrides win over the URL."""
        parts = urlsplit(url)
        if parts.scheme != "kafka":
            raise ValueError(f"expected a kafka:// URL, got {parts.scheme or 'no'} scheme")
        netloc = parts.netloc
        values: dict[str, Any] = {}
        if "@" in netloc:
            # urlsplit's username/password only look at the first host; split by hand.
            credentials, netloc = netloc.rsplit("@", 1)
            user, _, password = credentials.partition(":")
            values["sasl_username"] = user
            if password:
                values["sasl_password"] = password
        if not netloc:
            raise ValueError("a kafka:// URL needs at least one host:port")
        values["bootstrap_servers"] = netloc
        values.update(parse_qsl(parts.query, strict_parsing=bool(parts.query)))
        values.update(overrides)
        return cls.model_validate(values)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client (producer, consumer, admin) shares."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol.value,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return options
