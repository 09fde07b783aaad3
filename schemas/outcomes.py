"""Contracts of the pastoral-system integration: outcome events and webhook dead letters.

An *outcome event* is what pastoral staff record after a supportive signal: that they saw it,
spoke with the family, started or closed a support plan, or closed the matter. The vocabulary
is closed and supportive only: no value of it can express an enforcement step (a fine, a
penalty notice, a prosecution), and it never carries a name: staff are recorded by role.

A *webhook dead letter* is a record the webhook bridge could not deliver to a pastoral system
(the receiver refused it, every attempt failed, or the record is not an intervention event it
can read), kept with the reason, the attempts made and the record itself, exactly as published,
so it can be inspected and re-sent.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

OUTCOME_SCHEMA_VERSION = 1
WEBHOOK_DEAD_LETTER_SCHEMA_VERSION = 1
# Fixed namespace: the same outcome, submitted twice, gets the same id.
OUTCOME_NAMESPACE = uuid.UUID("0c9d3f7a-51e2-4b8e-9a43-6d2b1f08c7e4")
ID_REGEX = r"^[A-Za-z0-9_-]{1,64}$"
NOTE_MAX_CHARS = 280

NOTE_WARNING = (
    "Optional, short, and never identifying. Do NOT put names (pupil, family or staff), contact "
    "details, health, safeguarding or family circumstances here: outcome events travel on a topic "
    "that several systems read. Keep such detail in the school's pastoral system of record and "
    "write only something like 'plan agreed, review in 3 weeks'. Notes with e-mail addresses, "
    "phone numbers or UPNs are rejected."
)

# What a note must not contain. Names cannot be detected reliably, so the warning above stays the
# main protection; these catch the identifiers that can be.
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE = re.compile(r"(?<![\d+])(?:\+44[\s-]?|0)(?:\d[\s-]?){9,10}(?!\d)")  # UK numbers
_UPN = re.compile(r"\b[A-Za-z]\d{11}[0-9A-Za-z]\b")  # DfE unique pupil number: a letter, 11 digits, a check


class OutcomeAction(StrEnum):
    """What pastoral staff did. Closed and supportive: there is no enforcement value."""

    ACKNOWLEDGED = "acknowledged"  # the signal was seen and someone is taking it on
    SPOKE_WITH_FAMILY = "spoke_with_family"  # a conversation with the pupil's family took place
    SUPPORT_PLAN_STARTED = "support_plan_started"  # a support plan was agreed and started
    SUPPORT_PLAN_CLOSED = "support_plan_closed"  # a support plan ended (reviewed, no longer needed)
    CLOSED = "closed"  # nothing further is needed for this signal


OUTCOME_ACTION_TEXT = {
    OutcomeAction.ACKNOWLEDGED: "seen, and someone is taking it on",
    OutcomeAction.SPOKE_WITH_FAMILY: "spoke with the family",
    OutcomeAction.SUPPORT_PLAN_STARTED: "a support plan was agreed and started",
    OutcomeAction.SUPPORT_PLAN_CLOSED: "the support plan was reviewed and closed",
    OutcomeAction.CLOSED: "closed: nothing further needed",
}


class StaffRole(StrEnum):
    """Who recorded the outcome, as a role. Never a person's name."""

    FORM_TUTOR = "form_tutor"
    HEAD_OF_YEAR = "head_of_year"
    PASTORAL_LEAD = "pastoral_lead"
    SENCO = "senco"
    DESIGNATED_SAFEGUARDING_LEAD = "designated_safeguarding_lead"
    ATTENDANCE_LEAD = "attendance_lead"
    SCHOOL_NURSE = "school_nurse"
    FAMILY_SUPPORT_WORKER = "family_support_worker"
    EARLY_HELP_COORDINATOR = "early_help_coordinator"
    SENIOR_LEADER = "senior_leader"
    OTHER_STAFF = "other_staff"


def _utc(value: Any) -> Any:
    """Timestamps without an offset are UTC (as for register marks); all are stored in UTC."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return value  # pydantic reports it
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)
    return value


class OutcomeEvent(BaseModel):
    """What pastoral staff did about a pupil, recorded as an event (topic `reconnect.outcomes.v1`)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    schema_version: int = Field(OUTCOME_SCHEMA_VERSION, description="Contract major version; only 1 is understood.")
    outcome_id: str = Field(
        pattern=ID_REGEX,
        description="Idempotency key: supplied by the client (e.g. a UUID it keeps across retries), or derived "
        "deterministically from the content with OutcomeEvent.make_id. The same outcome sent twice has the same id "
        "and is counted once.",
    )
    pupil_id: str = Field(pattern=ID_REGEX, description="Pseudonymous pupil id, as on the register marks.")
    school_id: str = Field(pattern=ID_REGEX, description="Pseudonymous school id.")
    intervention_event_id: str | None = Field(
        None, pattern=ID_REGEX,
        description="The event_id of the intervention this responds to, when there is one.",
    )
    action: OutcomeAction = Field(description="What was done. A closed, supportive vocabulary.")
    recorded_at: dt.datetime = Field(
        description="When the action happened or was recorded (ISO 8601; without an offset, UTC). Required, so a "
        "retried submission derives the same outcome_id."
    )
    recorded_by_role: StaffRole = Field(description="The recorder's role, never their name.")
    note: str | None = Field(None, max_length=NOTE_MAX_CHARS, description=NOTE_WARNING)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> int:
        if isinstance(value, bool) or str(value).strip() != str(OUTCOME_SCHEMA_VERSION):
            raise ValueError(f"schema_version {value!r} is not supported (version {OUTCOME_SCHEMA_VERSION} is)")
        return OUTCOME_SCHEMA_VERSION

    @field_validator("recorded_at", mode="before")
    @classmethod
    def _recorded_at(cls, value: Any) -> Any:
        return _utc(value)

    @field_validator("note")
    @classmethod
    def _no_identifiers(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for pattern, what in ((_EMAIL, "an e-mail address"), (_UPN, "a UPN"), (_PHONE, "a phone number")):
            if pattern.search(value):
                raise ValueError(f"note looks like it contains {what}; notes must not identify anyone")
        return value

    @staticmethod
    def make_id(pupil_id: str, action: OutcomeAction | str, recorded_at: dt.datetime,
                intervention_event_id: str | None = None) -> str:
        """The deterministic outcome id: same pupil, action, time and intervention -> same id."""
        stamp = _utc(recorded_at).isoformat()
        return str(uuid.uuid5(OUTCOME_NAMESPACE,
                              f"{pupil_id}|{OutcomeAction(action).value}|{stamp}|{intervention_event_id or ''}"))

    @classmethod
    def from_request(cls, data: dict[str, Any]) -> OutcomeEvent:
        """Validate a submission (e.g. the body of POST /outcomes), deriving outcome_id when it is absent.

        Raises pydantic.ValidationError for anything unusable.
        """
        if isinstance(data, dict) and not data.get("outcome_id"):
            draft = cls.model_validate({**data, "outcome_id": "pending"})  # raises ValidationError
            data = {**data, "outcome_id": cls.make_id(draft.pupil_id, draft.action, draft.recorded_at,
                                                       draft.intervention_event_id)}
        return cls.model_validate(data)

    def to_wire(self) -> bytes:
        """Compact JSON for the outcomes topic (key: pupil_id, like the marks)."""
        return self.model_dump_json(exclude_none=True).encode()


class WebhookFailure(StrEnum):
    """Why the webhook bridge dead-lettered a record. Stable: dashboards key on them. New reasons
    may be added within a major version (consumers treat an unknown reason as "not delivered")."""

    REJECTED = "rejected"  # the receiver answered 4xx (not 408 or 429): retrying would not help
    REDIRECTED = "redirected"  # 3xx: the webhook URL is wrong; the bridge does not follow redirects
    MAX_ATTEMPTS = "max_attempts"  # every attempt timed out, failed to connect, or got 5xx/408/429
    TOMBSTONE = "tombstone"  # the record has no value (null)
    INVALID_ENCODING = "invalid_encoding"  # the value is not UTF-8
    INVALID_JSON = "invalid_json"  # the value is not JSON (or nested too deeply to read)
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"  # an event of another major version
    INVALID_EVENT = "invalid_event"  # JSON, but not an intervention event of this major version
    INTERNAL_ERROR = "internal_error"  # a defect met while handling this record: kept, never lost


class WebhookDeadLetter(BaseModel):
    """A record the webhook bridge could not deliver (topic `reconnect.webhook-dead-letter.v1`): an
    intervention the receiver refused or never accepted, or a record that is not an intervention."""

    schema_version: int = WEBHOOK_DEAD_LETTER_SCHEMA_VERSION
    reason: WebhookFailure
    detail: str = Field(description="A sentence: what happened on the last attempt, or why the record could not be "
                        "read. Never the record's content (that is in `raw`).")
    event_id: str | None = Field(None, description="The intervention's event_id (idempotency key), when readable.")
    attempts: int = Field(ge=0, description="HTTP attempts made (0 for a record that was not a valid event).")
    last_status: int | None = Field(None, description="HTTP status of the last attempt; null if it got no response.")
    last_error: str | None = Field(
        None, description="timeout or connection_error when the last attempt had no response.")
    webhook_host: str | None = Field(
        None, description="Host of the webhook (never the path or query, which may hold tokens).")
    raw: str = Field(
        description="The record value exactly as published (UTF-8, or base64 when not text), truncated if huge; "
        "empty for a tombstone.")
    raw_encoding: str = "utf-8"
    raw_bytes: int
    raw_sha256: str
    truncated: bool = False
    topic: str
    partition: int
    offset: int
    first_attempt_at: dt.datetime | None = None
    dead_lettered_at: dt.datetime
