"""When to try a delivery again: exponential backoff with full jitter, and the receiver's Retry-After.

The numbers come from the settings (`webhook_max_attempts`, `webhook_backoff_base_s`,
`webhook_backoff_max_s`, `webhook_timeout_s`, `webhook_max_retry_after_s`), typed there once.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import re
import time
from dataclasses import dataclass

from streams.settings import Settings

_DELTA_SECONDS = re.compile(r"[0-9]{1,10}", re.ASCII)  # not str.isdigit(): "²" is a digit to it


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int  # HTTP attempts per event, the first included; then the event is dead-lettered
    backoff_base_s: float
    backoff_max_s: float
    timeout_s: float  # per HTTP attempt (connect, send, and each read)
    max_retry_after_s: float  # a longer Retry-After is waited for this long

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.backoff_base_s, self.backoff_max_s, self.max_retry_after_s) < 0 or self.timeout_s <= 0:
            raise ValueError("backoffs and the Retry-After cap must be >= 0, the timeout > 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_attempts=settings.webhook_max_attempts, backoff_base_s=settings.webhook_backoff_base_s,
                   backoff_max_s=settings.webhook_backoff_max_s, timeout_s=settings.webhook_timeout_s,
                   max_retry_after_s=settings.webhook_max_retry_after_s)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))] after failed attempt `attempt`."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(max(attempt - 1, 0), 62)))
        return rng.uniform(0, ceiling)

    def wait_after(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before the next attempt: the receiver's Retry-After (capped) when it gave one."""
        if retry_after_s is not None:
            return min(retry_after_s, self.max_retry_after_s)
        return self.backoff(attempt, rng)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    try:
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, seconds)
