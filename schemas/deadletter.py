"""Building dead-letter records: the raw input, its reason, and where it came from."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from pydantic import BaseModel, Field

from schemas.events import EVENT_SCHEMA_VERSION
from schemas.marks import MarkRejected

# Enough of an oversized payload to recognise it; the full message stays on its topic at its offset.
MAX_RAW_KEPT = 4096


class DeadLetter(BaseModel):
    """A mark that could not be used, kept with its reason and enough to find or replay it."""

    schema_version: int = EVENT_SCHEMA_VERSION
    reason: str
    detail: str
    stage: str = Field(description="Where it was rejected: ingest, worker or replay.")
    raw: str = Field(description="The raw row or message (UTF-8, or base64 when not text), truncated if huge.")
    raw_encoding: str = "utf-8"
    raw_bytes: int
    raw_sha256: str
    truncated: bool = False
    source_file: str | None = None
    line: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    dead_lettered_at: dt.datetime


def encode_raw(raw: bytes | str) -> dict[str, object]:
    """The one encoding of a raw payload kept in any dead letter (marks or webhook): the first
    MAX_RAW_KEPT bytes as UTF-8 text, or base64 when they are not text, with its size and hash."""
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    kept = data[:MAX_RAW_KEPT]
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return {"raw": text, "raw_encoding": encoding, "raw_bytes": len(data),
            "raw_sha256": hashlib.sha256(data).hexdigest(), "truncated": len(data) > MAX_RAW_KEPT}


def dead_letter(rejection: MarkRejected, raw: bytes | str, *, stage: str, **where: object) -> DeadLetter:
    return DeadLetter(
        reason=rejection.reason.value, detail=rejection.detail, stage=stage, **encode_raw(raw),
        dead_lettered_at=dt.datetime.now(dt.timezone.utc), **where,
    )
