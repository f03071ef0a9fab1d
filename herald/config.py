"""Configuration: environment variables (HERALD_*) over an optional TOML file over defaults.

`herald --help` prints `describe()`, so every setting documents itself here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from herald.errors import HeraldError

CHANNELS = ("sse", "in_app", "push", "email", "sms")


class Strict(BaseModel):
    """A section of the config file: an unknown or mistyped key fails, never ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RetryPolicy(Strict):
    """Exponential backoff for one channel: d = min(cap, base * 2^(attempt-1)), equal jitter."""

    base_s: float = Field(gt=0)
    cap_s: float = Field(gt=0)
    max_attempts: int = Field(ge=1, le=100)


DEFAULT_RETRY = {
    "push": RetryPolicy(base_s=30, cap_s=3600, max_attempts=5),
    "email": RetryPolicy(base_s=60, cap_s=6 * 3600, max_attempts=8),
    "sms": RetryPolicy(base_s=30, cap_s=1800, max_attempts=3),
    "sse": RetryPolicy(base_s=5, cap_s=300, max_attempts=5),
    "in_app": RetryPolicy(base_s=5, cap_s=300, max_attempts=5),
}


class Rule(Strict):
    """What every escalation rule has (SPEC §5): levels 2 and 3 at 1x and 2x `renotify_s`."""

    enabled: bool = True
    renotify_s: int = Field(900, gt=0)

    @model_validator(mode="after")
    def _hysteresis(self) -> Rule:
        opens = getattr(self, "open_above", getattr(self, "open_at", None))
        resolves = getattr(self, "resolve_below", None)
        if opens is not None and resolves is not None and resolves > opens:
            raise ValueError("resolve_below must not exceed the opening threshold (no flapping)")
        return self


class SlidingRule(Rule):
    window_s: int = Field(300, ge=1, le=86_400, description="the sliding event-time window")


class FailureRate(SlidingRule):
    """`region_failure_rate`: failed / (delivered + failed) per tenant, region, channel."""

    open_above: float = Field(0.2, gt=0, le=1)
    resolve_below: float = Field(0.1, ge=0, le=1)
    min_attempts: int = Field(50, ge=1)


class DeadLetterSpike(SlidingRule):
    """`dead_letter_spike`: dead letters per tenant and channel in the window."""

    open_at: int = Field(100, ge=1)
    resolve_below: int = Field(10, ge=0)


class PendingBacklog(Rule):
    """`pending_backlog`: deliveries pending longer than `older_than_s`, per tenant, region."""

    open_at: int = Field(1000, ge=1)
    resolve_below: int = Field(100, ge=0)
    older_than_s: int = Field(900, ge=1)


class CriticalUnread(Rule):
    """`critical_unread`: at sent + ack_deadline_s, read / delivered of a high or critical
    broadcast below `ratio` opens; reaching it resolves."""

    ratio: float = Field(0.9, gt=0, le=1)


class TenantQuota(SlidingRule):
    """`tenant_quota`: a tenant's events/s over the window above its quota; inert without
    quotas (tenant id -> events/s)."""

    quotas: dict[str, float] = Field(default_factory=dict)
    resolve_ratio: float = Field(0.8, gt=0, le=1)

    @field_validator("quotas")
    @classmethod
    def _positive(cls, quotas: dict[str, float]) -> dict[str, float]:
        for tenant, quota in quotas.items():
            if quota <= 0:
                raise ValueError(f"quota of tenant {tenant!r} must be > 0")
        return quotas


class Escalations(Strict):
    """The five rules of SPEC §5, each a `[escalations.<rule>]` table in the config file."""

    # Off: the shards keep no escalation signals and no agent or publisher runs (what
    # `herald bench --ab escalations` compares against).
    enabled: bool = True
    critical_unread: CriticalUnread = CriticalUnread()
    region_failure_rate: FailureRate = FailureRate()
    dead_letter_spike: DeadLetterSpike = DeadLetterSpike()
    pending_backlog: PendingBacklog = PendingBacklog()
    tenant_quota: TenantQuota = TenantQuota()


class Settings(BaseSettings):
    """Herald's settings. Each field is read from HERALD_<FIELD> (upper case)."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    data_dir: Path = Field(Path(".herald"), description="state, broker data, embedded ClickHouse")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_port: int = Field(9092, description="port of the local broker (`herald kafka start`)")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL (also what"
        " `herald kafka start` serves: PLAINTEXT or SASL_SSL with SCRAM)",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (SASL_* protocols)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (never printed; or the next setting)"
    )
    kafka_sasl_password_file: Path | None = Field(
        None, description="a file holding the SASL password (a trailing newline is dropped)"
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA bundle (PEM) trusted for TLS; unset: the system's CAs"
    )
    clickhouse_dsn: str | None = Field(
        None,
        description="chdb:///abs/path (default: <data_dir>/clickhouse) or http://u:p@host:8123",
    )
    connect_timeout_s: float = Field(30.0, description="how long to wait for Kafka at start")
    partitions: int = Field(4, description="partitions of the input topics Herald creates")
    shards: int = Field(4, description="partitions of herald.events (aggregation shards)")
    grace_s: int = Field(600, description="lateness accepted after a window ends")
    dedup_horizon_s: int = Field(
        86400, gt=0, description="an event_id is remembered this long of event time (up to 2x)"
    )
    reach: bool = Field(
        True, description="exact distinct recipients per broadcast (one key per user in RocksDB)"
    )
    reach_horizon_s: int = Field(
        7 * 86400, gt=0, description="a broadcast's recipients are remembered this long after"
        " its last delivery or read (event time)",
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
    web_port: int = Field(
        6066, description="web port (health, /metrics, /status, `herald query`)"
    )
    web_host: str = Field(
        "127.0.0.1", description="address the web port binds (0.0.0.0 for a scraper elsewhere)"
    )
    web_token: SecretStr | None = Field(
        None, description="bearer token /query and /report require (unset: no token asked)"
    )
    web_token_metrics: bool = Field(False, description="/metrics requires HERALD_WEB_TOKEN too")
    metrics_enabled: bool = Field(True, description="serve Prometheus metrics at /metrics")
    log_format: Literal["human", "json"] = Field(
        "human", description="worker logs: human, or json (one object per line)"
    )
    group_prefix: str = Field("herald", description="prefix of consumer group ids")
    retry: dict[str, RetryPolicy] = Field(
        default_factory=lambda: dict(DEFAULT_RETRY), description="backoff per channel"
    )
    escalations: Escalations = Field(
        default_factory=Escalations, description="escalation rules (see README)"
    )

    @field_validator("retry", mode="before")
    @classmethod
    def _known_channels(cls, retry: Any) -> Any:
        """A policy for a channel not in SPEC §2 would be silently unused: refuse it. A
        channel the file leaves out keeps its default policy."""
        if isinstance(retry, dict):
            unknown = sorted(set(retry) - set(CHANNELS))
            if unknown:
                raise ValueError(f"unknown channel {unknown[0]!r} (known: {', '.join(CHANNELS)})")
            return {**DEFAULT_RETRY, **retry}
        return retry

    @model_validator(mode="after")
    def _kafka_login(self) -> Settings:
        """SASL without a complete login, or an unreadable password file, fails at start
        rather than at the broker."""
        if self.kafka_sasl_password_file is not None and self.kafka_sasl_password is not None:
            raise ValueError("set HERALD_KAFKA_SASL_PASSWORD or HERALD_KAFKA_SASL_PASSWORD_FILE,"
                             " not both")  # fmt: skip
        password = self.sasl_password
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [f"HERALD_KAFKA_SASL_{name.upper()}" for name, value in (
                ("mechanism", self.kafka_sasl_mechanism), ("username", self.kafka_sasl_username),
                ("password", password)) if not value]  # fmt: skip
            if missing:
                raise ValueError(f"{self.kafka_security_protocol} needs {', '.join(missing)}")
        return self

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
        toml = StrictToml(settings_cls, toml_file=os.environ.get("HERALD_CONFIG"))
        return (init_settings, env_settings, toml)

    @property
    def sasl_password(self) -> SecretStr | None:
        """HERALD_KAFKA_SASL_PASSWORD, or what HERALD_KAFKA_SASL_PASSWORD_FILE holds."""
        if self.kafka_sasl_password_file is None:
            return self.kafka_sasl_password
        return SecretStr(_read_secret(self.kafka_sasl_password_file))

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


class StrictToml(TomlConfigSettingsSource):
    """The config file's top-level keys must be settings: a typo is an error, not a default."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        unknown = sorted(set(values) - set(Settings.model_fields))
        if unknown:
            raise HeraldError(f"config file: unknown key {unknown[0]!r}")
        return values


def _read_secret(path: Path) -> str:
    """A secret file's text without its trailing newline; a one-line HeraldError if unusable
    (also when it goes missing after start)."""
    try:
        secret = path.read_text().removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise HeraldError(f"config: cannot read HERALD_KAFKA_SASL_PASSWORD_FILE {path}: "
                          f"{reason}") from None  # fmt: skip
    if not secret:
        raise HeraldError(f"config: HERALD_KAFKA_SASL_PASSWORD_FILE {path} is empty")
    return secret


def load() -> Settings:
    """The settings, or a one-line HeraldError naming the first bad key."""
    try:
        return Settings()
    except SettingsError as exc:  # an environment value that is not valid JSON
        raise HeraldError(f"config: {str(exc).splitlines()[0]}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")  # a validator's own sentence
        raise HeraldError(f"config: {where + ': ' if where else ''}{message}") from None


def describe() -> str:
    """One line per setting, for `herald --help`."""
    lines = ["Configuration (environment, or a TOML file named by HERALD_CONFIG):"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else "see docs"
        lines.append(f"  HERALD_{name.upper():<26} {field.description} [default: {default}]")
    return "\n".join(lines)
