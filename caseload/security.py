"""The web app's guards, as plain ASGI middleware so no route can forget them.

* `SecurityHeaders`: a strict Content-Security-Policy (no script at all; the one stylesheet is
  inline and allowed by its hash), no framing, a referrer only within the site (pseudonyms are in URLs), no caching.
* `CsrfGuard`: every state-changing request must be a same-origin form post carrying the
  session's CSRF token; the form is read here (bounded in size) and handed to the route.
* `SignInRequired`: everything except the health endpoint and the sign-in page needs a live
  sign-in; the signed-in staff member (with their schools) is put on the request state.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_FORM_BYTES = 16 * 1024
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/healthz", "/signin"})


def csrf_token(session: dict) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def content_security_policy(style_hash: str) -> str:
    return ("default-src 'none'; "
            f"style-src '{style_hash}'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, style_hash: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", content_security_policy(style_hash).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"cache-control", b"no-store"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    header for header in self.headers if header[0] not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _same_origin(headers: Headers) -> bool:
    """A browser's cross-site POST carries Origin (and Sec-Fetch-Site): refuse it outright."""
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


class CsrfGuard:
    """Checks every non-GET request's form for the session's CSRF token, then replays its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _same_origin(headers):
            await PlainTextResponse("Cross-site request refused.", status_code=403)(scope, receive, send)
            return
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            await PlainTextResponse("Only form posts are accepted.", status_code=415)(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_FORM_BYTES:
                await PlainTextResponse("The form is too large.", status_code=413)(scope, receive, send)
                return
        try:
            form = {key: values[-1] for key, values in
                    parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50).items()}
        except (UnicodeDecodeError, ValueError):
            await PlainTextResponse("The form could not be read.", status_code=400)(scope, receive, send)
            return
        expected = scope.get("session", {}).get("csrf")
        given = form.get(CSRF_FIELD, "")
        if not isinstance(expected, str) or not hmac.compare_digest(given.encode(), expected.encode()):
            await PlainTextResponse("The form has expired or did not come from this site. Go back, reload the "
                                    "page and try again.", status_code=403)(scope, receive, send)
            return
        scope.setdefault("state", {})["form"] = form
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@dataclass(frozen=True)
class StaffContext:
    """Who is signed in, and the schools whose cases they may see."""

    staff_id: int
    username: str
    role: str
    schools: tuple[str, ...]


class SignInRequired:
    """Resolves the sign-in (`lookup(token) -> StaffContext | None`, run in a worker thread)."""

    def __init__(self, app: ASGIApp, lookup: Callable[[str | None], StaffContext | None]) -> None:
        self.app = app
        self.lookup = lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.concurrency import run_in_threadpool

        token = scope.get("session", {}).get("sid")
        staff = await run_in_threadpool(self.lookup, token) if token else None
        scope.setdefault("state", {})["staff"] = staff
        if staff is None and scope["path"] not in PUBLIC_PATHS:
            if scope["method"] in SAFE_METHODS:
                response = RedirectResponse("/signin", status_code=303)
            else:
                response = PlainTextResponse("Sign in first.", status_code=401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
