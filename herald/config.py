"""Configuration: environment variables (HERALD_*) over an optional TOML file over defaults.

`herald --help` prints `describe()`, so every setting documents itself here.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CHANNELS = ("sse", "in_app", "push", "email", "sms")


class RetryPolicy(BaseModel):
    """Exponential backoff for one channel: d = min(cap, base * 2^(attempt-1)), equal jitter."""

    base_s: float
    cap_s: float
    max_attempts: int


DEFAULT_RETRY = {
    "push": RetryPolicy(base_s=30, cap_s=3600, max_attempts=5),
    "email": RetryPolicy(base_s=60, cap_s=6 * 3600, max_attempts=8),
    "sms": RetryPolicy(base_s=30, cap_s=1800, max_attempts=3),
    "sse": RetryPolicy(base_s=5, cap_s=300, max_attempts=5),
    "in_app": RetryPolicy(base_s=5, cap_s=300, max_attempts=5),
}


class Settings(BaseSettings):
    """Herald's settings. Each field is read from HERALD_<FIELD> (upper case)."""

    model_config = SettingsConfigDict(
        env_prefix="HERALD_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(Path(".herald"), description="state, broker data, embedded ClickHouse")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_port: int = Field(9092, description="port of the local broker (`herald kafka start`)")
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL"
    )
    kafka_sasl_mechanism: str | None = Field(None, description="PLAIN | SCRAM-SHA-256 | ...")
    kafka_sasl_username: str | None = Field(None, description="SASL user")
    kafka_sasl_password: str | None = Field(None, description="SASL password")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle for TLS")
    clickhouse_dsn: str | None = Field(
        None, description="chdb:///abs/path (default: <data_dir>/clickhouse) or http://u:p@host:8123"
    )
    connect_timeout_s: float = Field(30.0, description="how long to wait for Kafka at start")
    partitions: int = Field(4, description="partitions of the input topics Herald creates")
    shards: int = Field(4, description="partitions of herald.events (aggregation shards)")
    grace_s: int = Field(600, description="lateness accepted after a window ends")
    dedup_horizon_s: int = Field(
        86400, gt=0, description="an event_id is remembered this long of event time (up to 2x)"
    )
    max_future_s: int = Field(
        900, gt=0, description="events further ahead of the wall clock are invalid"
    )
    retry_rate_per_s: float = Field(
        2000, gt=0, description="retries a shard publishes per second at most (after outages)"
    )
    idle_partition_s: float = Field(30.0, description="idle source partitions stop holding back")
    snapshot_interval_s: float = Field(1.0, description="how often changed windows are published")
    batch_max: int = Field(20000, description="max records per consumer batch")
    raw_events: bool = Field(True, description="store every valid event in events_raw")
    raw_ttl_days: int = Field(30, description="TTL of events_raw")
    ingest_processes: int | None = Field(
        None, description="`herald run`: ingest child processes (default: 1 with 2+ cores, else 0)"
    )
    web_port: int = Field(6066, description="worker web port (health, `herald query`)")
    group_prefix: str = Field("herald", description="prefix of consumer group ids")
    retry: dict[str, RetryPolicy] = Field(
        default_factory=lambda: dict(DEFAULT_RETRY), description="backoff per channel"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, environment, then the TOML file named by HERALD_CONFIG.
        toml = TomlConfigSettingsSource(settings_cls, toml_file=os.environ.get("HERALD_CONFIG"))
        return (init_settings, env_settings, toml)

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def dsn(self) -> str:
        """The ClickHouse DSN; chDB paths must be absolute (FACTS: `chdb://x` means db `x`)."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{self.data_path / 'clickhouse'}"

    @property
    def ingest_children(self) -> int:
        """Ingest (validation and routing, the costliest stage) gets a core of its own when
        there is one to spare: a pipeline of two processes, measured faster on 2 cores."""
        if self.ingest_processes is not None:
            return self.ingest_processes
        return 1 if len(os.sched_getaffinity(0)) >= 2 else 0

    @property
    def embedded_clickhouse(self) -> bool:
        return self.dsn.startswith("chdb:")


def describe() -> str:
    """One line per setting, for `herald --help`."""
    lines = ["Configuration (environment, or a TOML file named by HERALD_CONFIG):"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else "see docs"
        lines.append(f"  HERALD_{name.upper():<26} {field.description} [default: {default}]")
    return "\n".join(lines)
