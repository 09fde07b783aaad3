"""One HTTP attempt at delivering a webhook, and what its answer means (a `Verdict`).

Standard library only (http.client) over a kept-alive connection. What an answer means follows
the Standard Webhooks guidance: 2xx delivered; 429, 408 and 5xx (and no answer at all) worth
retrying; 3xx final (redirects are not followed: fix the URL); any other 4xx final.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from streams.webhook.retry import parse_retry_after

USER_AGENT = "reconnect-webhook-bridge/2"
RESPONSE_KEPT_BYTES = 200  # of the receiver's answer, for the dead letter's detail
RESPONSE_READ_BYTES = 64 * 1024  # a longer answer is not drained: the connection is dropped instead
RETRYABLE_4XX = frozenset({408, 429})


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"
    REDIRECTED = "redirected"


class NoResponse(StrEnum):
    """Why an attempt got no HTTP answer."""

    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"


def verdict_for(status: int | None) -> Verdict:
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in RETRYABLE_4XX or status >= 500:
        return Verdict.RETRY
    if 300 <= status < 400:
        return Verdict.REDIRECTED
    return Verdict.REJECTED


@dataclass(frozen=True)
class AttemptResult:
    status: int | None  # None: no response
    no_response: NoResponse | None = None
    retry_after_s: float | None = None
    seconds: float = 0.0
    detail: str = ""

    @property
    def verdict(self) -> Verdict:
        return verdict_for(self.status)

    @property
    def status_class(self) -> str:
        """A bounded metric label: 2xx, 3xx, 4xx, 429, 5xx, timeout or connection_error."""
        if self.status is None:
            return (self.no_response or NoResponse.CONNECTION_ERROR).value
        if self.status == 429:
            return "429"
        return f"{self.status // 100}xx"

    def describe(self) -> str:
        """`HTTP 503` or `timeout`, for logs and dead letters."""
        return f"HTTP {self.status}" if self.status is not None else (self.no_response or "no response")


class WebhookClient:
    """POSTs to one URL over a kept-alive connection."""

    IDLE_REUSE_S = 4.0  # a connection idle longer than this is replaced rather than risked

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the webhook URL must be http(s)://host[:port]/path")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    @property
    def display_host(self) -> str:
        """Host and port only: the path and query may hold a token."""
        return f"{self.host}:{self.port}" if self.port else self.host

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._last_used > self.IDLE_REUSE_S:
            self.close()
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def post(self, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        started = time.monotonic()
        try:
            conn = self._connection()
            conn.request("POST", self.path, body=body,
                         headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
            response = conn.getresponse()
            text = response.read(RESPONSE_READ_BYTES)
            status = response.status
            retry_after = parse_retry_after(response.getheader("Retry-After")) if status in (429, 503) else None
            if not response.isclosed() or response.will_close:
                self.close()  # an answer too long to drain, or the server wants the connection closed
            self._last_used = time.monotonic()
            return AttemptResult(status, None, retry_after, time.monotonic() - started,
                                 text[:RESPONSE_KEPT_BYTES].decode("utf-8", "replace"))
        except (TimeoutError, socket.timeout) as exc:
            self.close()
            return AttemptResult(None, NoResponse.TIMEOUT, None, time.monotonic() - started, f"timed out: {exc}")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return AttemptResult(None, NoResponse.CONNECTION_ERROR, None, time.monotonic() - started,
                                 type(exc).__name__)
