"""Signing and verifying webhook deliveries, per the Standard Webhooks specification (v1, symmetric).

One implementation for both ends: the bridge signs, the reference receiver verifies, and any
pastoral system can verify with an off-the-shelf Standard Webhooks library instead.

* `webhook-id`: the event's `event_id` (deterministic, the same on every retry: the idempotency key).
* `webhook-timestamp`: Unix time in whole seconds when this attempt was signed (every attempt is
  signed afresh, so a captured request cannot be replayed outside the tolerance window).
* `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
  one per signing secret, so a secret can be rotated with no downtime: the sender signs with the
  new and the old secret for a while, and a receiver accepts a delivery if any signature matches
  any of its secrets.
* Secrets are `whsec_` + base64 of 24 to 64 random bytes; the HMAC key is the decoded bytes.
  Several secrets (during a rotation) are written as one string separated by whitespace.

A secret never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as random_bytes
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
# The specification's recommended replay window, either side of the receiver's clock.
DEFAULT_TOLERANCE_S = 300
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64

# Strict ASCII grammars: str.isdigit() accepts "²" and int() accepts "٣", neither of which is a timestamp.
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
# No "." (it delimits the signed content) and nothing outside printable ASCII.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_\-:]{1,256}", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)
MAX_SIGNATURES = 16  # a header with more entries is refused rather than hashed against every secret


class InvalidSecretError(ValueError):
    """A signing secret that is not `whsec_` + base64 of 24 to 64 bytes (the value is never included)."""


class SignatureError(ValueError):
    """Why a delivery is not authentic or not fresh: missing or malformed headers, a stale or future
    timestamp, or no matching signature. The message is safe to log and to answer with a 401."""


@dataclass(frozen=True)
class WebhookSecret:
    """One signing secret: the HMAC key. Its repr does not show it."""

    key: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> WebhookSecret:
        text = text.strip()
        if not text.startswith(SECRET_PREFIX):
            raise InvalidSecretError(f"a webhook secret must start with {SECRET_PREFIX!r} (Standard Webhooks)")
        encoded = text[len(SECRET_PREFIX):]
        if not _BASE64.fullmatch(encoded):
            raise InvalidSecretError("a webhook secret must be whsec_ followed by base64")
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidSecretError("a webhook secret must be whsec_ followed by base64") from None
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise InvalidSecretError(
                f"a webhook secret must decode to {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, not {len(key)}")
        return cls(key)

    @classmethod
    def generate(cls, size: int = 32) -> WebhookSecret:
        return cls(random_bytes.token_bytes(size))

    def serialise(self) -> str:
        """The `whsec_...` form, to hand to the receiver's operator (never logged)."""
        return SECRET_PREFIX + base64.b64encode(self.key).decode("ascii")

    def sign(self, message_id: str, timestamp: int, body: bytes) -> str:
        """`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`."""
        return f"{SIGNATURE_VERSION},{base64.b64encode(self._digest(message_id, timestamp, body)).decode('ascii')}"

    def _digest(self, message_id: str, timestamp: int, body: bytes) -> bytes:
        signed = message_id.encode("ascii") + b"." + str(int(timestamp)).encode("ascii") + b"." + body
        return hmac.new(self.key, signed, hashlib.sha256).digest()


def parse_secrets(text: str) -> tuple[WebhookSecret, ...]:
    """Every secret in a setting or file: one, or several separated by whitespace during a rotation
    (the first is the newest). Raises InvalidSecretError when there is none or one is malformed."""
    parsed = tuple(WebhookSecret.parse(part) for part in text.split())
    if not parsed:
        raise InvalidSecretError("no webhook secret given")
    return parsed


def check_message_id(message_id: str) -> str:
    if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
        raise SignatureError("webhook-id must be 1-256 characters of A-Z a-z 0-9 _ - :")
    return message_id


def signature_headers(secrets: Iterable[WebhookSecret], message_id: str, body: bytes,
                      now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt, signed with every secret given."""
    check_message_id(message_id)
    timestamp = int(time.time() if now is None else now)
    signatures = " ".join(secret.sign(message_id, timestamp, body) for secret in secrets)
    if not signatures:
        raise InvalidSecretError("no webhook secret given")
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signatures}


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # plain dicts are case-sensitive; HTTP header names are not
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def _offered_digests(header_value: str) -> list[bytes]:
    entries = header_value.split()
    if len(entries) > MAX_SIGNATURES:
        raise SignatureError(f"webhook-signature has more than {MAX_SIGNATURES} entries")
    digests = []
    for entry in entries:
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION or not _BASE64.fullmatch(encoded):
            continue  # another scheme (e.g. v1a) or garbage: not ours to check
        try:
            digests.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return digests


def verify(secrets: Iterable[WebhookSecret], body: bytes, headers: Mapping[str, str], *,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> str:
    """Check a delivery over its raw body; return its webhook-id, or raise SignatureError saying why not.

    Headers are checked strictly before any hashing; digests are compared in constant time.
    """
    message_id = check_message_id(_header(headers, ID_HEADER))
    stamp = _header(headers, TIMESTAMP_HEADER).strip()
    if not _TIMESTAMP.fullmatch(stamp):
        raise SignatureError("webhook-timestamp must be Unix time in whole seconds (ASCII digits)")
    timestamp = int(stamp)
    now = time.time() if now is None else now
    if timestamp < now - tolerance_s:
        raise SignatureError("webhook-timestamp is too old (a replayed request, or a clock far behind)")
    if timestamp > now + tolerance_s:
        raise SignatureError("webhook-timestamp is too new (a clock far ahead)")
    offered = _offered_digests(_header(headers, SIGNATURE_HEADER))
    if not offered:
        raise SignatureError("webhook-signature has no v1 signature")
    matched = False
    for secret in secrets:
        expected = secret._digest(message_id, timestamp, body)
        for digest in offered:  # no early exit: the time taken does not depend on which one matched
            matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise SignatureError("no signature matches (a tampered body or headers, or another secret)")
    return message_id
