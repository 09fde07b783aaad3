"""Reading a record of the interventions topic, and the dead letter of one that cannot be delivered.

Anything can be on a topic: a tombstone, bytes that are not UTF-8, text that is not JSON, JSON
nested thousands deep, JSON that is not an intervention event, an event of a later major version.
`read_event` turns each into an `UnreadableRecord` with a precise reason, and never raises anything
else: JSON is parsed by pydantic's parser, which refuses deep nesting with an error instead of
recursing (`json.loads` would raise RecursionError), and no error message carries the record's
content (a pupil id must not reach a log line; the dead letter keeps the raw bytes instead).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import pydantic_core
from pydantic import ValidationError

from schemas.deadletter import encode_raw
from schemas.events import EVENT_SCHEMA_VERSION, InterventionEvent
from schemas.outcomes import WebhookDeadLetter, WebhookFailure
from streams.webhook.http import AttemptResult
from streams.webhook.signing import SignatureError, check_message_id


class Record(Protocol):
    """What the bridge needs of a consumed record (kafka-python's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class UnreadableRecord(ValueError):
    def __init__(self, reason: WebhookFailure, detail: str, event_id: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.event_id = event_id


def _first_error(error: ValidationError) -> str:
    """Where and what, without the offending value (it may be a pupil id)."""
    first = error.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first['msg']}" if where else first["msg"]


def _event_id_of(document: Any) -> str | None:
    """The record's event_id when it has a usable one (to name the dead letter), else None."""
    candidate = document.get("event_id") if isinstance(document, dict) else None
    try:
        return check_message_id(candidate)
    except SignatureError:
        return None


def read_event(value: bytes | None) -> InterventionEvent:
    """The intervention event in a record's value; raises UnreadableRecord (and only that) otherwise."""
    if value is None:
        raise UnreadableRecord(WebhookFailure.TOMBSTONE, "the record has no value (a tombstone)")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableRecord(WebhookFailure.INVALID_ENCODING,
                               f"the value is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        document = pydantic_core.from_json(value, allow_inf_nan=False)
    except ValueError as exc:
        raise UnreadableRecord(WebhookFailure.INVALID_JSON, f"the value is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UnreadableRecord(WebhookFailure.INVALID_EVENT,
                               f"an intervention event is a JSON object, not {type(document).__name__}")
    event_id = _event_id_of(document)
    version = document.get("schema_version", EVENT_SCHEMA_VERSION)
    if type(version) is not int or version != EVENT_SCHEMA_VERSION:
        raise UnreadableRecord(WebhookFailure.UNSUPPORTED_SCHEMA_VERSION,
                               f"schema_version is not {EVENT_SCHEMA_VERSION} (this bridge delivers major version "
                               f"{EVENT_SCHEMA_VERSION} only)", event_id)
    try:
        event = InterventionEvent.model_validate_json(value)
    except ValidationError as exc:
        raise UnreadableRecord(WebhookFailure.INVALID_EVENT, f"not an intervention event: {_first_error(exc)}",
                               event_id) from None
    if event_id is None or event_id != event.event_id:
        raise UnreadableRecord(WebhookFailure.INVALID_EVENT,
                               "event_id cannot be a webhook-id (1-256 of A-Z a-z 0-9 _ - :)")
    return event


def dead_letter(record: Record, reason: WebhookFailure, detail: str, *, event_id: str | None = None,
                attempts: int = 0, last: AttemptResult | None = None, webhook_host: str | None = None,
                first_attempt_at: dt.datetime | None = None) -> WebhookDeadLetter:
    return WebhookDeadLetter(
        reason=reason, detail=detail, event_id=event_id, attempts=attempts,
        last_status=last.status if last else None,
        last_error=last.no_response.value if last and last.no_response else None,
        webhook_host=webhook_host, **encode_raw(record.value or b""), topic=record.topic,
        partition=record.partition, offset=record.offset, first_attempt_at=first_attempt_at,
        dead_lettered_at=dt.datetime.now(dt.timezone.utc),
    )
