"""Building dead-letter records: the raw input, its reason, and where it came from.

Dead letters keep raw input, which may carry pupil data, so they are kept only for a bounded,
documented time: the dead-letter topic's `retention.ms` is set from
`RECONNECT_DEAD_LETTER_RETENTION_DAYS` (default 90 days) by `reconnect topics create`, long
enough for a data engineer to notice, fix the export or the limit, and replay them with
`reconnect dead-letters replay`; after that the broker deletes them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib

from pydantic import BaseModel, Field

from schemas.events import EVENT_SCHEMA_VERSION
from schemas.marks import MarkRejected

# Enough of an oversized payload to recognise it; the full message stays on its topic at its offset.
MAX_RAW_KEPT = 4096


class DeadLetter(BaseModel):
    """A mark that could not be used, kept with its reason and enough to find or replay it.

    Retention: on the dead-letter topic for RECONNECT_DEAD_LETTER_RETENTION_DAYS (default 90)
    days, then deleted by the broker; `reconnect dead-letters list` shows them without their raw
    input, `reconnect dead-letters replay` re-publishes them after a fix.
    """

    schema_version: int = EVENT_SCHEMA_VERSION
    reason: str
    detail: str
    stage: str = Field(description="Where it was rejected: ingest, worker or replay.")
    raw: str = Field(description="The raw row or message (UTF-8, or base64 when not text), truncated if huge. "
                     "Kept for the dead-letter topic's retention (RECONNECT_DEAD_LETTER_RETENTION_DAYS, default 90).")
    raw_encoding: str = "utf-8"
    raw_bytes: int
    raw_sha256: str
    truncated: bool = False
    source_file: str | None = None
    line: int | None = None
    header: str | None = Field(
        None, description="For an ingest row: the file's header line, so the row can be rebuilt into a mark and "
        "replayed after a fix.")
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    dead_lettered_at: dt.datetime

    def raw_payload(self) -> bytes:
        """The raw input as it was kept (the first MAX_RAW_KEPT bytes when `truncated`)."""
        if self.raw_encoding == "base64":
            try:
                return base64.b64decode(self.raw, validate=True)
            except binascii.Error:
                return b""
        return self.raw.encode("utf-8")


def _as_bytes(raw: bytes | str) -> bytes:
    if not isinstance(raw, str):
        return bytes(raw)
    try:
        return raw.encode("utf-8", "surrogateescape")  # text decoded with surrogateescape: its bytes back
    except UnicodeEncodeError:
        return raw.encode("utf-8", "surrogatepass")  # any other lone surrogate, kept byte for byte


def encode_raw(raw: bytes | str, *, size: int | None = None, sha256: str | None = None) -> dict[str, object]:
    """The one encoding of a raw payload kept in any dead letter (marks or webhook): the first
    MAX_RAW_KEPT bytes as UTF-8 text, or base64 when they are not text, with its size and hash.

    `size` and `sha256` describe the whole input when `raw` is only its beginning (a CSV line
    too long to hold in memory is hashed as it streams past)."""
    data = _as_bytes(raw)
    kept = data[:MAX_RAW_KEPT]
    total = len(data) if size is None else size
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if total > len(kept) and exc.reason == "unexpected end of data":
            # Cut inside a multi-byte character (what precedes the first error is valid): keep the text.
            text, encoding = kept[:exc.start].decode("utf-8"), "utf-8"
        else:
            text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return {"raw": text, "raw_encoding": encoding, "raw_bytes": total,
            "raw_sha256": sha256 or hashlib.sha256(data).hexdigest(), "truncated": total > len(kept)}


def dead_letter(rejection: MarkRejected, raw: bytes | str, *, stage: str, raw_size: int | None = None,
                raw_sha256: str | None = None, **where: object) -> DeadLetter:
    return DeadLetter(
        reason=rejection.reason.value, detail=rejection.detail, stage=stage,
        **encode_raw(raw, size=raw_size, sha256=raw_sha256), dead_lettered_at=dt.datetime.now(dt.timezone.utc),
        **where,
    )
