"""`reconnect receiver`: a reference webhook receiver for local use, demos and tests.

It does what a pastoral system's webhook endpoint should do with Reconnect's deliveries:

1. verify the signature over the raw body and the timestamp's freshness (`verify_signature` in
   streams/bridge.py is the scheme), answering 401 to anything unsigned, tampered, stale or
   signed with another secret;
2. de-duplicate by the idempotency key: a delivery whose `Idempotency-Key` was already stored is
   answered 200 (`{"duplicate": true}`) and not stored again, so at-least-once delivery becomes
   exactly-once in effect;
3. store what it received: in memory, and appended as JSON lines to `store_path` when given.

`GET /received` reports the count and the ids stored (for tests and demos); `GET /healthz` is a
liveness probe. A `FailureScript` makes it misbehave on purpose (refuse the first attempts of
every event, hold requests past the client's timeout, fail everything for a while, answer 429
with Retry-After), to show the bridge's retries. Standard library only (http.server in a thread).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from streams.bridge import (
    DEFAULT_TOLERANCE_S,
    EVENT_ID_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
WEBHOOK_PATH = "/webhook"

# Actions a failure script can take for one request: an HTTP status (int), or
#   "timeout": hold the request for `hold_s` (past the client's timeout), then answer 500; nothing stored;
#   "slow_ok": store the event, then hold for `hold_s` before answering 200 (the client has given up:
#              its retry is a duplicate, and must be answered 200 without storing twice);
#   "close":   close the connection without answering; nothing stored;
#   "ok":      behave normally.
Action = int | str


@dataclass
class FailureScript:
    """How the receiver misbehaves, for tests and demos. The default is a well-behaved receiver."""

    per_event: Sequence[Action] = ()  # action for attempt 1, 2, ... of every event id; then normal
    per_event_for: dict[str, Sequence[Action]] = field(default_factory=dict)  # overrides per_event for some ids
    status_for: dict[str, int] = field(default_factory=dict)  # a fixed status for every attempt of these ids
    outage_s: float = 0.0  # fail every signed request for this long...
    outage_after_stored: int = 0  # ...starting when this many events have been stored
    outage_status: int = 500
    retry_after: str | None = None  # Retry-After sent with 429 and 503
    hold_s: float = 1.0

    def action_for(self, event_id: str, attempt: int) -> Action:
        if event_id in self.status_for:
            return self.status_for[event_id]
        script = self.per_event_for.get(event_id, self.per_event)
        return script[attempt - 1] if attempt <= len(script) else "ok"


@dataclass
class Received:
    event_id: str
    received_at: float
    attempt: int  # the receiver's count of signed requests for this id when it was stored
    body: bytes

    def as_dict(self) -> dict:
        return {"event_id": self.event_id, "received_at": self.received_at, "attempt": self.attempt,
                "event": json.loads(self.body)}


class ReferenceReceiver:
    """The receiver as an object: start() in a background thread, inspect, stop()."""

    def __init__(self, secrets: str | bytes | Iterable[str | bytes], *, host: str = "127.0.0.1", port: int = 0,
                 tolerance_s: float = DEFAULT_TOLERANCE_S, script: FailureScript | None = None,
                 store_path: Path | None = None) -> None:
        self.secrets = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
        if not self.secrets or not all(self.secrets):
            raise ValueError("the receiver needs at least one non-empty secret")
        self.host, self.port = host, port
        self.tolerance_s = tolerance_s
        self.script = script or FailureScript()
        self.store_path = Path(store_path) if store_path else None
        self._lock = threading.Lock()
        self.stored: dict[str, Received] = {}
        self.attempt_times: dict[str, list[float]] = {}  # event id -> monotonic time of each signed request
        self.unauthorised = 0
        self.duplicates = 0
        self.requests = 0
        self.outage_requests = 0
        self._outage_until: float | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -------------------------------------------------------------------------------
    def start(self) -> ReferenceReceiver:
        receiver = self

        class Handler(_Handler):
            owner = receiver

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="reference-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ReferenceReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{WEBHOOK_PATH}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # Inspection ------------------------------------------------------------------------------
    def set_script(self, script: FailureScript) -> None:
        with self._lock:
            self.script = script
            self._outage_until = None

    def attempts(self, event_id: str) -> int:
        with self._lock:
            return len(self.attempt_times.get(event_id, []))

    def summary(self) -> dict:
        with self._lock:
            return {"count": len(self.stored), "event_ids": list(self.stored), "duplicates": self.duplicates,
                    "unauthorised": self.unauthorised, "requests": self.requests,
                    "outage_requests": self.outage_requests,
                    "attempts": {k: len(v) for k, v in self.attempt_times.items()}}

    # Handling --------------------------------------------------------------------------------
    def handle_post(self, headers, body: bytes) -> tuple[int, dict, dict[str, str], Action]:
        """(status, JSON answer, extra headers, action) for one delivery."""
        problem = verify_signature(self.secrets, body, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER),
                                   tolerance_s=self.tolerance_s)
        with self._lock:
            self.requests += 1
            if problem:
                self.unauthorised += 1
                return 401, {"error": "unauthorised", "detail": problem}, {}, "ok"
            key = headers.get(IDEMPOTENCY_HEADER) or headers.get(EVENT_ID_HEADER)
            try:
                event = json.loads(body)
            except ValueError:
                return 400, {"error": "body is not JSON"}, {}, "ok"
            if not isinstance(event, dict) or not key or event.get("event_id") != key:
                return 400, {"error": "the idempotency key must be present and equal the event's event_id"}, {}, "ok"
            times = self.attempt_times.setdefault(key, [])
            times.append(time.monotonic())
            attempt = len(times)
            script = self.script
            now = time.monotonic()
            if script.outage_s > 0 and self._outage_until is None and len(self.stored) >= script.outage_after_stored:
                self._outage_until = now + script.outage_s
            action: Action
            if self._outage_until is not None and now < self._outage_until:
                action = script.outage_status
                self.outage_requests += 1
            else:
                action = script.action_for(key, attempt)
            extra = {}
            if isinstance(action, int):
                if script.retry_after is not None and action in (429, 503):
                    extra["Retry-After"] = script.retry_after
                return action, {"error": f"scripted {action}"}, extra, action
            if action in ("timeout", "close"):
                return 500, {"error": "scripted"}, {}, action
            if key in self.stored:
                self.duplicates += 1
                return 200, {"duplicate": True, "event_id": key}, {}, action
            entry = Received(key, time.time(), attempt, body)
            self.stored[key] = entry
            if self.store_path is not None:
                with self.store_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry.as_dict(), sort_keys=True) + "\n")
            return 200, {"stored": True, "event_id": key}, {}, action


class _Handler(BaseHTTPRequestHandler):
    owner: ReferenceReceiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests and demos print their own
        log.debug("receiver: " + format, *args)

    def _answer(self, status: int, document: dict, headers: dict[str, str] | None = None) -> None:
        payload = (json.dumps(document) + "\n").encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (a scripted timeout): nothing to tell it
            self.close_connection = True

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/received":
            self._answer(200, self.owner.summary())
        elif self.path == "/healthz":
            self._answer(200, {"ok": True})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(413, {"error": "body too large or length missing"})
            return
        body = self.rfile.read(length)
        if self.path.split("?")[0] != WEBHOOK_PATH:
            self._answer(404, {"error": "not found"})
            return
        status, document, headers, action = self.owner.handle_post(self.headers, body)
        if action == "close":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if action in ("timeout", "slow_ok"):
            time.sleep(self.owner.script.hold_s)
            self.close_connection = True
        self._answer(status, document, headers)


def run_receiver(secret: str | bytes | Iterable[str | bytes], *, host: str = "127.0.0.1", port: int = 8099,
                 store_path: Path | None = None, tolerance_s: float = DEFAULT_TOLERANCE_S,
                 script: FailureScript | None = None, stop_event: threading.Event | None = None,
                 on_ready=None) -> dict:
    """Serve the reference receiver until SIGTERM/SIGINT (or `stop_event`); returns its final summary."""
    stop_event = stop_event or threading.Event()
    receiver = ReferenceReceiver(secret, host=host, port=port, tolerance_s=tolerance_s, script=script,
                                 store_path=store_path).start()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop_event.set())
    try:
        if on_ready:
            on_ready(receiver)
        while not stop_event.wait(0.5):
            pass
    finally:
        receiver.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return receiver.summary()
