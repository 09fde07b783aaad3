"""`reconnect receiver`: a reference webhook receiver, for local use, demos and tests.

It does what a pastoral system's endpoint should do with Reconnect's deliveries:

1. verify the Standard Webhooks signature over the raw body, and the timestamp's freshness, with
   the same `signing.verify` the bridge's signatures are made for, answering 401 to anything
   unsigned, tampered, stale or signed with another secret (several secrets: a rotation);
2. de-duplicate by `webhook-id` (the event's `event_id`): a delivery already stored is answered
   200 `{"duplicate": true}` and not stored again, so at-least-once delivery is exactly-once in effect;
3. store what it received: in memory, and appended as JSON lines to `store_path` when given.

`GET /received` lists the count and the ids stored (never an event's content); `GET /healthz` is
a liveness probe. A `FailureScript` makes it misbehave on purpose (refuse the first attempts of
every event, hold a request past the client's timeout, fail everything for a while, answer 429
with Retry-After), to show the bridge's retries.

It runs on uvicorn (h11: chunked bodies work) behind Starlette, bound to 127.0.0.1 unless told
otherwise, with bounded concurrency (further connections get 503), a deadline for a request's
headers (a client trickling them a byte at a time is disconnected), a deadline for its body (408),
a header size limit (400) and a body size limit (413), whether the body has a Content-Length or
is chunked. A malformed header is a 400 or a 401, never a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pydantic_core
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from streams.webhook.signing import (
    DEFAULT_TOLERANCE_S,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    WebhookSecret,
    verify,
)

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook"
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}", re.ASCII)


@dataclass(frozen=True)
class ReceiverConfig:
    """Where the receiver listens, how much it accepts and how long it waits: the one place these are typed."""

    host: str = "127.0.0.1"
    port: int = 8099
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0  # from connecting (or the previous response) to a request's last header
    body_timeout_s: float = 10.0  # from the last header to the body's last byte
    keep_alive_s: int = 5
    max_concurrency: int = 64  # connections and requests at once; more are answered 503
    tolerance_s: float = DEFAULT_TOLERANCE_S


# Actions a failure script can take for one request: an HTTP status (int), or
#   "timeout": hold the request for `hold_s` (past the client's timeout), then answer 500; nothing stored;
#   "slow_ok": store the event, then hold for `hold_s` before answering 200 (the client has given up:
#              its retry is a duplicate, and must be answered 200 without storing twice);
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
    signature_headers: dict[str, str]  # as received, so anyone can check the delivery again

    def as_dict(self) -> dict:
        return {"event_id": self.event_id, "received_at": self.received_at, "attempt": self.attempt,
                "event": json.loads(self.body)}


@dataclass(frozen=True)
class Reply:
    status: int
    document: dict
    headers: dict[str, str] = field(default_factory=dict)
    action: Action = "ok"


class ReceiverState:
    """What the receiver has seen and stored; shared by the server's event loop and inspecting threads."""

    def __init__(self, secrets: Sequence[WebhookSecret], tolerance_s: float, script: FailureScript,
                 store_path: Path | None) -> None:
        if not secrets:
            raise ValueError("the receiver needs at least one secret")
        self.secrets = tuple(secrets)
        self.tolerance_s = tolerance_s
        self.script = script
        self.store_path = store_path
        self._lock = threading.Lock()
        self.stored: dict[str, Received] = {}
        self.attempt_times: dict[str, list[float]] = {}  # event id -> monotonic time of each signed request
        self.requests = 0
        self.unauthorised = 0
        self.bad_requests = 0
        self.duplicates = 0
        self.outage_requests = 0
        self._outage_until: float | None = None

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
                    "unauthorised": self.unauthorised, "bad_requests": self.bad_requests,
                    "requests": self.requests, "outage_requests": self.outage_requests,
                    "attempts": {k: len(v) for k, v in self.attempt_times.items()}}

    def count_bad_request(self) -> None:
        with self._lock:
            self.bad_requests += 1

    def handle(self, headers, body: bytes) -> Reply:
        """The answer to one delivery whose body was read in full."""
        with self._lock:
            self.requests += 1
            try:
                key = verify(self.secrets, body, headers, tolerance_s=self.tolerance_s)
            except SignatureError as problem:
                self.unauthorised += 1
                return Reply(401, {"error": "unauthorised", "detail": str(problem)})
            try:
                event = pydantic_core.from_json(body)
            except ValueError:
                self.bad_requests += 1
                return Reply(400, {"error": "the body is not JSON"})
            if not isinstance(event, dict) or event.get("event_id") != key:
                self.bad_requests += 1
                return Reply(400, {"error": "webhook-id must equal the event's event_id"})
            signed = {name: headers[name] for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)}
            return self._accept(key, body, signed)

    def _accept(self, key: str, body: bytes, signed: dict[str, str]) -> Reply:
        times = self.attempt_times.setdefault(key, [])
        now = time.monotonic()
        times.append(now)
        attempt = len(times)
        script = self.script
        if script.outage_s > 0 and self._outage_until is None and len(self.stored) >= script.outage_after_stored:
            self._outage_until = now + script.outage_s
        if self._outage_until is not None and now < self._outage_until:
            action: Action = script.outage_status
            self.outage_requests += 1
        else:
            action = script.action_for(key, attempt)
        if isinstance(action, int):
            extra = {"Retry-After": script.retry_after} if script.retry_after and action in (429, 503) else {}
            return Reply(action, {"error": f"scripted {action}"}, extra, action)
        if action == "timeout":
            return Reply(500, {"error": "scripted timeout"}, {}, action)
        if key in self.stored:
            self.duplicates += 1
            return Reply(200, {"duplicate": True, "event_id": key}, {}, action)
        entry = Received(key, time.time(), attempt, body, signed)
        self.stored[key] = entry
        if self.store_path is not None:
            with self.store_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry.as_dict(), sort_keys=True) + "\n")
        return Reply(200, {"stored": True, "event_id": key}, {}, action)


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(state: ReceiverState, config: ReceiverConfig) -> Starlette:
    async def webhook(request: Request) -> Response:
        # h11 bounds headers still arriving; a complete request's are counted here.
        if sum(len(name) + len(value) for name, value in request.scope["headers"]) > config.max_header_bytes:
            state.count_bad_request()
            return JSONResponse({"error": "request headers too large"}, 431, headers={"Connection": "close"})
        length = request.headers.get("content-length")
        if length is not None and not _CONTENT_LENGTH.fullmatch(length.strip()):
            state.count_bad_request()
            return JSONResponse({"error": "malformed Content-Length"}, 400, headers={"Connection": "close"})
        if length is not None and int(length) > config.max_body_bytes:
            return JSONResponse({"error": f"the body is over {config.max_body_bytes} bytes"}, 413,
                                headers={"Connection": "close"})
        try:
            with anyio.fail_after(config.body_timeout_s):
                body = await _read_body(request, config.max_body_bytes)
        except TimeoutError:
            return JSONResponse({"error": "the body took too long"}, 408, headers={"Connection": "close"})
        except _BodyTooLarge:
            return JSONResponse({"error": f"the body is over {config.max_body_bytes} bytes"}, 413,
                                headers={"Connection": "close"})
        except ClientDisconnect:
            return Response(status_code=400)
        reply = state.handle(request.headers, body)
        headers = dict(reply.headers)
        if reply.action in ("timeout", "slow_ok"):
            await anyio.sleep(state.script.hold_s)
            headers["Connection"] = "close"
        return JSONResponse(reply.document, reply.status, headers=headers)

    async def received(request: Request) -> Response:
        return JSONResponse(state.summary())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"]),
                             Route("/received", received, methods=["GET"]),
                             Route("/healthz", healthz, methods=["GET"])])


class _HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers. uvicorn closes idle
    keep-alive connections, but a client that trickles its headers a byte at a time resets that
    timer with every byte and would hold a connection (and a concurrency slot) for ever."""

    header_timeout_s: float = ReceiverConfig.header_timeout_s
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        waiting_since = self.scope  # a new request's headers replace the scope

        def expire() -> None:
            if self.scope is waiting_since and not self.transport.is_closing():
                self.transport.close()

        self._deadline = self.loop.call_later(self.header_timeout_s, expire)


class ReferenceReceiver:
    """The receiver as an object: start() serves in a background thread; inspect; stop()."""

    def __init__(self, secrets: Sequence[WebhookSecret], *, config: ReceiverConfig = ReceiverConfig(),
                 script: FailureScript | None = None, store_path: Path | None = None) -> None:
        self.config = config
        self.state = ReceiverState(secrets, config.tolerance_s, script or FailureScript(),
                                   Path(store_path) if store_path else None)
        self.host = config.host
        self.port = config.port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ReferenceReceiver:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        protocol = type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,),
                        {"header_timeout_s": self.config.header_timeout_s})
        server_config = uvicorn.Config(
            build_app(self.state, self.config), http=protocol, ws="none", lifespan="off", log_level="warning",
            access_log=False, server_header=False, limit_concurrency=self.config.max_concurrency,
            timeout_keep_alive=self.config.keep_alive_s, h11_max_incomplete_event_size=self.config.max_header_bytes,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(server_config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="reference-receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the reference receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> ReferenceReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + WEBHOOK_PATH

    # Inspection (delegated to the state) -------------------------------------------------------------
    def set_script(self, script: FailureScript) -> None:
        self.state.set_script(script)

    def attempts(self, event_id: str) -> int:
        return self.state.attempts(event_id)

    def summary(self) -> dict:
        return self.state.summary()

    @property
    def stored(self) -> dict[str, Received]:
        return self.state.stored

    @property
    def attempt_times(self) -> dict[str, list[float]]:
        return self.state.attempt_times


def run_receiver(secrets: Sequence[WebhookSecret], *, config: ReceiverConfig = ReceiverConfig(),
                 store_path: Path | None = None, script: FailureScript | None = None,
                 stop_event: threading.Event | None = None, on_ready=None) -> dict:
    """Serve the reference receiver until SIGTERM/SIGINT (or `stop_event`); returns its final summary."""
    import signal

    stop_event = stop_event or threading.Event()
    receiver = ReferenceReceiver(secrets, config=config, script=script, store_path=store_path).start()
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
