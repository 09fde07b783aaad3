"""The one settings object, read from the environment (and an optional `.env`).

Every knob of the running system lives here; nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
TOPIC_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECONNECT_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "RECONNECT_KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port list of the Kafka brokers.",
    )
    app_id: str = Field("reconnect", description="Faust app id; also the consumer group of the worker.")

    topic_marks: str = "reconnect.marks.v1"
    topic_interventions: str = "reconnect.interventions.v1"
    topic_dead_letter: str = "reconnect.dead-letter.v1"
    topic_outcomes: str = "reconnect.outcomes.v1"
    topic_webhook_dead_letter: str = "reconnect.webhook-dead-letter.v1"
    topic_partitions: int = Field(4, ge=1, le=1024)
    topic_replication: int = Field(1, ge=1, le=5)

    # The embedded broker waits half the session timeout before the first join; 6 s / 1 s is
    # valid on Apache Kafka too and keeps group joins to a few seconds.
    session_timeout_s: float = Field(6.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    broker_connect_retry_s: float = Field(60.0, ge=0, description="How long clients keep retrying an unreachable broker at start.")

    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    data_dir: Path = Field(REPO_ROOT / "var" / "faust", description="Faust's local data directory.")

    model_path: Path = Field(REPO_ROOT / "models" / "artifacts" / "risk_model.joblib")
    model_reload_interval_s: float = Field(10.0, gt=0, description="How often the worker checks for a new model file.")
    metrics_interval_s: float = Field(5.0, gt=0, description="How often lag and table-size gauges are refreshed.")

    batch_max_marks: int = Field(500, ge=1, description="Largest micro-batch the worker scores at once.")
    scoring_threads: int = Field(
        1, ge=1, description="Threads the model may use per scoring call. One keeps OpenMP from spinning "
        "against the consumer thread on small machines; micro-batches make it cheap anyway.")
    batch_within_s: float = Field(0.1, gt=0, description="Longest a micro-batch waits to fill.")

    max_message_bytes: int = Field(64 * 1024, ge=256, description="Larger mark messages are dead-lettered.")
    max_future_days: int = Field(
        31, ge=0, description="Marks dated further ahead than this are rejected (leave may be entered a month ahead)."
    )
    state_window_days: int = Field(
        126, ge=42, le=366,
        description="Calendar days of sessions kept mark by mark; older sessions are folded into year-to-date totals.",
    )

    log_level: str = "info"

    webhook_url: str | None = Field(None, description="The pastoral system's webhook for `reconnect bridge`.")
    webhook_secret: SecretStr | None = Field(None, description="Shared HMAC-SHA256 secret for webhook signatures.")
    webhook_max_attempts: int = Field(10, ge=1, description="Delivery attempts before an event is dead-lettered.")
    webhook_backoff_base_s: float = Field(0.5, ge=0)
    webhook_backoff_max_s: float = Field(60.0, ge=0)
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_max_retry_after_s: float = Field(600.0, ge=0, description="Longest Retry-After the bridge honours.")
    bridge_metrics_port: int = Field(9108, ge=0, le=65535, description="The bridge's /metrics port (0: none).")

    @field_validator("topic_marks", "topic_interventions", "topic_dead_letter", "topic_outcomes",
                     "topic_webhook_dead_letter", "app_id")
    @classmethod
    def _valid_topic_name(cls, value: str) -> str:
        # The embedded broker accepts an empty topic name; Kafka's own rules are enforced here.
        if not value or len(value) > 249 or set(value) - TOPIC_NAME_CHARS or value in {".", ".."}:
            raise ValueError(f"invalid Kafka topic name {value!r}")
        return value

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.kafka_bootstrap_servers.split(",") if server.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
