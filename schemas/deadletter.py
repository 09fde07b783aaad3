"""Building dead-letter records: the raw input, its reason, and where it came from."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from schemas.events import DeadLetter
from schemas.marks import MarkRejected

# Enough of an oversized payload to recognise it; the full message stays on its topic at its offset.
MAX_RAW_KEPT = 4096


def dead_letter(rejection: MarkRejected, raw: bytes | str, *, stage: str, **where: object) -> DeadLetter:
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    kept = data[:MAX_RAW_KEPT]
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return DeadLetter(
        reason=rejection.reason.value, detail=rejection.detail, stage=stage, raw=text, raw_encoding=encoding,
        raw_bytes=len(data), raw_sha256=hashlib.sha256(data).hexdigest(), truncated=len(data) > MAX_RAW_KEPT,
        dead_lettered_at=dt.datetime.now(dt.timezone.utc), **where,
    )
