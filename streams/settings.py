"""The one settings object, read from the environment (and an optional `.env`).

Every knob of the running system lives here, typed once with its default; nothing else reads
the environment. A command builds one `Settings` (command-line options become constructor
arguments, which win over the environment) and passes it down; `None` means "off".
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import marks as mark_contract
from schemas import topics

REPO_ROOT = Path(__file__).resolve().parent.parent


class BrokerProfile(StrEnum):
    """Client defaults suited to a broker. Explicit settings always win over a profile."""

    KAFKA = "kafka"  # Apache Kafka: answers a fetch as soon as fetch.min.bytes is there
    EMBEDDED = "embedded"  # tansu (tests, demo): holds every fetch for its full max wait


# What each profile changes, as field -> value; a field set explicitly is left alone.
PROFILE_DEFAULTS: dict[BrokerProfile, dict[str, object]] = {
    BrokerProfile.KAFKA: {},
    BrokerProfile.EMBEDDED: {"consumer_fetch_max_wait_ms": 100},
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECONNECT_", env_file=".env", extra="ignore", populate_by_name=True,
    )

    # -- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "RECONNECT_KAFKA_BOOTSTRAP_SERVERS",
                                      "kafka_bootstrap_servers"),
        description="Comma-separated host:port list of the Kafka brokers.",
    )
    broker_profile: BrokerProfile = Field(
        BrokerProfile.KAFKA, description="Client defaults for the broker: kafka (production) or embedded (tansu).")
    app_id: str = Field("reconnect", description="Faust app id; also the consumer group of the worker.")

    topic_marks: str = topics.MARKS
    topic_interventions: str = topics.INTERVENTIONS
    topic_dead_letter: str = topics.DEAD_LETTER
    topic_outcomes: str = topics.OUTCOMES
    topic_webhook_dead_letter: str = topics.WEBHOOK_DEAD_LETTER
    topic_partitions: int = Field(4, ge=1, le=1024)
    topic_replication: int = Field(1, ge=1, le=5)

    # The embedded broker waits half the session timeout before the first join; 6 s / 1 s is
    # valid on Apache Kafka too and keeps group joins to a few seconds.
    session_timeout_s: float = Field(6.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    broker_connect_retry_s: float = Field(60.0, ge=0, description="How long clients keep retrying an unreachable broker at start.")

    consumer_fetch_max_wait_ms: int = Field(
        500, ge=0, le=60_000,
        description="Longest the broker may hold a fetch waiting for data (Kafka's own default, 500 ms; Apache "
        "Kafka answers as soon as there is data, the embedded broker only when this expires).")
    consumer_fetch_max_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    consumer_max_partition_fetch_bytes: int = Field(1024 * 1024, ge=1024)
    consumer_max_poll_records: int | None = Field(None, ge=1, description="Records per poll (None: the client's default).")
    producer_linger_ms: int = Field(5, ge=0, description="How long the worker's producers wait to fill a batch.")
    producer_max_batch_bytes: int = Field(1024 * 1024, ge=1024)
    producer_request_timeout_ms: int = Field(30_000, ge=1000)

    # -- the worker ------------------------------------------------------------------------
    web_bind: str = Field("127.0.0.1", description="Interface the worker's web server listens on.")
    web_host: str = Field("127.0.0.1", description="Host name the worker advertises for its web server.")
    web_port: int = Field(6066, ge=1, le=65535)
    api_token: SecretStr | None = Field(
        None, description="Bearer token for every web endpoint but /metrics, /livez and /readyz. None: those "
        "endpoints are off.")
    api_token_file: Path | None = Field(None, description="A file holding the API token (wins over api_token).")
    data_dir: Path = Field(REPO_ROOT / "var" / "faust", description="Faust's local data directory.")
    event_loop: str = Field("uvloop", pattern="^(uvloop|asyncio)$", description="The worker's event loop.")

    model_path: Path = Field(REPO_ROOT / "models" / "artifacts" / "risk_model.skops")
    model_reload_interval_s: float = Field(10.0, gt=0, description="How often the worker checks for a new model file.")
    metrics_interval_s: float = Field(5.0, gt=0, description="How often lag and table-size gauges are refreshed.")

    batch_max_marks: int = Field(2000, ge=1, description="Largest micro-batch the worker scores at once.")
    batch_within_s: float = Field(0.02, gt=0, description="Longest a micro-batch waits to fill.")
    scoring_threads: int = Field(
        1, ge=1, description="Threads the model may use per scoring call. One keeps OpenMP from spinning "
        "against the consumer thread on small machines; micro-batches make it cheap anyway.")

    # -- what a mark may be ----------------------------------------------------------------
    max_message_bytes: int = Field(
        mark_contract.DEFAULT_MAX_MESSAGE_BYTES, ge=256, description="Larger mark messages are dead-lettered.")
    max_json_depth: int = Field(
        mark_contract.DEFAULT_MAX_JSON_DEPTH, ge=2, le=64, description="Deeper JSON nesting is dead-lettered unparsed.")
    max_future_days: int | None = Field(
        mark_contract.DEFAULT_MAX_FUTURE_DAYS, ge=0,
        description="Marks dated further ahead than this are rejected (leave may be entered a month ahead). "
        "None: no limit.")
    recorded_at_max_skew_s: float = Field(
        mark_contract.DEFAULT_RECORDED_AT_MAX_SKEW.total_seconds(), ge=0,
        description="How far past now a recorded_at may be (clock skew between an MIS and us).")
    recorded_at_floor: dt.date = Field(
        mark_contract.EARLIEST_DATE, description="Earliest plausible recorded_at; earlier ones are rejected.")
    pupil_id_pattern: str = Field(
        mark_contract.DEFAULT_PUPIL_ID_PATTERN,
        description="Regular expression a pupil id must match in full (a pseudonym; see the README for what it "
        "does and does not catch).")
    state_window_days: int = Field(
        126, ge=42, le=366,
        description="Calendar days of sessions kept mark by mark; older sessions are folded into year-to-date totals.",
    )
    dead_letter_retention_days: int = Field(
        90, ge=1, le=3650, description="How long dead letters (with the raw input) are kept on their topic.")

    log_level: str = "info"

    # -- the webhook bridge ----------------------------------------------------------------
    webhook_url: str | None = Field(None, description="The pastoral system's webhook for `reconnect bridge`.")
    webhook_secret: SecretStr | None = Field(
        None, description="Standard Webhooks signing secret, whsec_ + base64, shared with the receiver; during a "
        "rotation several, separated by whitespace, the newest first. Or `--secret-file`.")
    webhook_max_attempts: int = Field(10, ge=1, description="Delivery attempts before an event is dead-lettered.")
    webhook_backoff_base_s: float = Field(0.5, ge=0)
    webhook_backoff_max_s: float = Field(60.0, ge=0)
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_max_retry_after_s: float = Field(600.0, ge=0, description="Longest Retry-After the bridge honours.")
    bridge_metrics_port: int | None = Field(9108, ge=1, le=65535, description="The bridge's /metrics port (None: none).")

    @field_validator("topic_marks", "topic_interventions", "topic_dead_letter", "topic_outcomes",
                     "topic_webhook_dead_letter", "app_id")
    @classmethod
    def _valid_topic_name(cls, value: str) -> str:
        return topics.check_topic_name(value)

    @field_validator("api_token", "api_token_file", "webhook_url", "webhook_secret", mode="before")
    @classmethod
    def _blank_is_off(cls, value: object) -> object:
        # An empty variable (compose passes `${RECONNECT_API_TOKEN:-}` through) means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("pupil_id_pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pupil_id_pattern is not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _apply_profile(self) -> Settings:
        for name, value in PROFILE_DEFAULTS[self.broker_profile].items():
            if name not in self.model_fields_set:
                object.__setattr__(self, name, value)
        return self

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.kafka_bootstrap_servers.split(",") if server.strip()]

    def mark_limits(self) -> mark_contract.MarkLimits:
        return mark_contract.MarkLimits(
            max_future_days=self.max_future_days, max_message_bytes=self.max_message_bytes,
            max_json_depth=self.max_json_depth, recorded_at_max_skew=dt.timedelta(seconds=self.recorded_at_max_skew_s),
            recorded_at_floor=self.recorded_at_floor, pupil_id_pattern=self.pupil_id_pattern,
        )

    def api_token_value(self) -> str | None:
        """The configured API token, from its file first; None when there is none."""
        if self.api_token_file is not None:
            token = self.api_token_file.read_text(encoding="utf-8").strip()
            return token or None
        return self.api_token.get_secret_value().strip() if self.api_token else None


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment with command-line overrides (None means "not given")."""
    return Settings(**{name: value for name, value in overrides.items() if value is not None})
