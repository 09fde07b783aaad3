"""The caseload's settings: one pydantic-settings object, built once by the CLI and passed down.

Everything is `RECONNECT_CASELOAD_<FIELD>` except what the caseload shares with the rest of
Reconnect, which it reads under the same names the worker does: `KAFKA_BOOTSTRAP_SERVERS`,
the topic names (`RECONNECT_TOPIC_MARKS`, ...) and the consumer timing. `None` means "off".
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import marks, topics

REPO_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = REPO_ROOT / "var"
DEFAULT_DATABASE_URL = f"sqlite:///{VAR_DIR / 'caseload.db'}"
SECRET_BYTES = 32
# Less than this many characters of secret is guessable; the generated one has 64.
MIN_SECRET_CHARS = 32

log = logging.getLogger(__name__)


def _alias(field: str, *shared: str) -> AliasChoices:
    """The caseload's own name, then the names shared with the worker, then the field name."""
    return AliasChoices(f"RECONNECT_CASELOAD_{field.upper()}", *shared, field)


class BrokerProfile(StrEnum):
    KAFKA = "kafka"  # Apache Kafka answers a fetch as soon as there is data
    EMBEDDED = "embedded"  # tansu holds every fetch for its full max wait: ask for a short one


class CaseloadSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECONNECT_CASELOAD_", env_file=".env", extra="ignore", populate_by_name=True,
    )

    # -- storage ---------------------------------------------------------------------------
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the caseload database: SQLite by default (a file under var/), or "
        "PostgreSQL, e.g. postgresql+psycopg://caseload:PASSWORD@db:5432/caseload.")

    # -- the web app -----------------------------------------------------------------------
    bind: str = Field("127.0.0.1", description="Interface the web app listens on.")
    port: int = Field(8080, ge=1, le=65535)
    session_secret: SecretStr | None = Field(
        None, description="Key that signs the session cookie. None: read session_secret_file, creating it "
        "with a random key when it does not exist (local use).")
    session_secret_file: Path = Field(VAR_DIR / "caseload-session.key")
    cookie_secure: bool = Field(
        True, description="Send the session cookie over HTTPS only. Only a local demo or test on "
        "http://127.0.0.1 turns this off.")
    session_max_age_s: int = Field(8 * 3600, ge=60, description="A sign-in lasts at most this long.")
    page_size: int = Field(50, ge=5, le=500, description="Cases per caseload page.")
    forwarded_allow_ips: str | None = Field(
        None, description="Addresses of the reverse proxies whose X-Forwarded-For to trust (comma-separated), so "
        "sign-in limits count the real client rather than the proxy. None: trust no proxy header.")

    # -- sign-in rate limits ---------------------------------------------------------------
    signin_window_s: int = Field(900, ge=1, description="Failed sign-ins are counted over this many seconds.")
    signin_max_failures_per_account: int = Field(
        5, ge=1, description="Failed sign-ins for one account in the window before it is held back.")
    signin_max_failures_per_client: int = Field(
        20, ge=1, description="Failed sign-ins from one client address in the window before it is held back.")

    # -- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "RECONNECT_CASELOAD_KAFKA_BOOTSTRAP_SERVERS",
                                      "kafka_bootstrap_servers"))
    consume: bool = Field(
        True, description="Run the Kafka consumers and the outcome publisher with the web app (off: the web "
        "app alone, e.g. for a read-only replica).")
    consumer_group: str = Field("reconnect-caseload", description="The caseload's own consumer group.")
    topic_marks: str = Field(topics.MARKS, validation_alias=_alias("topic_marks", "RECONNECT_TOPIC_MARKS"))
    topic_interventions: str = Field(
        topics.INTERVENTIONS, validation_alias=_alias("topic_interventions", "RECONNECT_TOPIC_INTERVENTIONS"))
    topic_outcomes: str = Field(topics.OUTCOMES, validation_alias=_alias("topic_outcomes", "RECONNECT_TOPIC_OUTCOMES"))
    broker_profile: BrokerProfile = Field(
        BrokerProfile.KAFKA, validation_alias=_alias("broker_profile", "RECONNECT_BROKER_PROFILE"))
    session_timeout_s: float = Field(
        6.0, gt=0, validation_alias=_alias("session_timeout_s", "RECONNECT_SESSION_TIMEOUT_S"))
    heartbeat_interval_s: float = Field(
        1.0, gt=0, validation_alias=_alias("heartbeat_interval_s", "RECONNECT_HEARTBEAT_INTERVAL_S"))
    consumer_fetch_max_wait_ms: int = Field(
        500, ge=0, le=60_000,
        validation_alias=_alias("consumer_fetch_max_wait_ms", "RECONNECT_CONSUMER_FETCH_MAX_WAIT_MS"))
    consumer_max_poll_records: int = Field(2000, ge=1, description="Records applied per database transaction.")
    producer_request_timeout_ms: int = Field(30_000, ge=1000)
    outbox_interval_s: float = Field(
        5.0, gt=0, description="How often outcomes not yet on the topic (broker down when recorded) are retried.")

    log_level: str = Field("info", validation_alias=_alias("log_level", "RECONNECT_LOG_LEVEL"))

    # -- what a mark may be: read under the worker's names, so both accept the same marks ----
    max_message_bytes: int = Field(
        marks.DEFAULT_MAX_MESSAGE_BYTES, ge=256, validation_alias=_alias("max_message_bytes", "RECONNECT_MAX_MESSAGE_BYTES"))
    max_json_depth: int = Field(
        marks.DEFAULT_MAX_JSON_DEPTH, ge=2, le=64, validation_alias=_alias("max_json_depth", "RECONNECT_MAX_JSON_DEPTH"))
    max_future_days: int | None = Field(
        marks.DEFAULT_MAX_FUTURE_DAYS, ge=0, validation_alias=_alias("max_future_days", "RECONNECT_MAX_FUTURE_DAYS"))
    recorded_at_max_skew_s: float = Field(
        marks.DEFAULT_RECORDED_AT_MAX_SKEW.total_seconds(), ge=0,
        validation_alias=_alias("recorded_at_max_skew_s", "RECONNECT_RECORDED_AT_MAX_SKEW_S"))
    recorded_at_floor: dt.date = Field(
        marks.EARLIEST_DATE, validation_alias=_alias("recorded_at_floor", "RECONNECT_RECORDED_AT_FLOOR"))
    pupil_id_pattern: str = Field(
        marks.DEFAULT_PUPIL_ID_PATTERN, validation_alias=_alias("pupil_id_pattern", "RECONNECT_PUPIL_ID_PATTERN"))

    @field_validator("session_secret", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("topic_marks", "topic_interventions", "topic_outcomes", "consumer_group")
    @classmethod
    def _valid_topic_name(cls, value: str) -> str:
        return topics.check_topic_name(value)

    @model_validator(mode="after")
    def _apply_profile(self) -> CaseloadSettings:
        if self.broker_profile is BrokerProfile.EMBEDDED and "consumer_fetch_max_wait_ms" not in self.model_fields_set:
            object.__setattr__(self, "consumer_fetch_max_wait_ms", 100)
        return self

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.kafka_bootstrap_servers.split(",") if server.strip()]

    def mark_limits(self) -> marks.MarkLimits:
        return marks.MarkLimits(
            max_future_days=self.max_future_days, max_message_bytes=self.max_message_bytes,
            max_json_depth=self.max_json_depth, recorded_at_max_skew=dt.timedelta(seconds=self.recorded_at_max_skew_s),
            recorded_at_floor=self.recorded_at_floor, pupil_id_pattern=self.pupil_id_pattern,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> CaseloadSettings:
    """Settings from the environment with command-line overrides (None means "not given")."""
    return CaseloadSettings(**{name: value for name, value in overrides.items() if value is not None})


def session_secret(settings: CaseloadSettings) -> str:
    """The key that signs session cookies: the setting, else its file, else a new random one in that file.

    A generated key is written with owner-only permissions and announced in the log by path,
    never by value.
    """
    if settings.session_secret is not None:
        value = settings.session_secret.get_secret_value().strip()
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"RECONNECT_CASELOAD_SESSION_SECRET must be at least {MIN_SECRET_CHARS} characters")
        return value
    path = settings.session_secret_file
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"the session secret in {path} is shorter than {MIN_SECRET_CHARS} characters")
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(SECRET_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    log.warning("Generated a new session secret in %s (owner-only file). For production set "
                "RECONNECT_CASELOAD_SESSION_SECRET_FILE to a managed secret.", path)
    return value
