"""Standard Webhooks signing: exactly the specification's scheme, checked against the `standardwebhooks`
package from PyPI (which we did not write) in both directions, with rotation and strict headers."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from streams.webhook.signing import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidSecretError,
    SignatureError,
    WebhookSecret,
    parse_secrets,
    signature_headers,
    verify,
)

BODY = b'{"event_id":"2f1c7a4e-0b5d-5a8e-9c3f-1d2e3f4a5b6c","kind":"concern"}'
EVENT_ID = "2f1c7a4e-0b5d-5a8e-9c3f-1d2e3f4a5b6c"


def test_the_signature_is_the_specifications_hmac_over_id_timestamp_and_body(secret):
    headers = signature_headers([secret], EVENT_ID, BODY, now=1760000000.9)
    digest = hmac.new(secret.key, f"{EVENT_ID}.1760000000.".encode() + BODY, hashlib.sha256).digest()
    assert headers == {ID_HEADER: EVENT_ID, TIMESTAMP_HEADER: "1760000000",
                       SIGNATURE_HEADER: "v1," + base64.b64encode(digest).decode()}


def test_an_off_the_shelf_library_verifies_our_signatures_and_we_verify_its(secret):
    headers = signature_headers([secret], EVENT_ID, BODY)
    assert Webhook(secret.serialise()).verify(BODY, headers) == {"event_id": EVENT_ID, "kind": "concern"}
    with pytest.raises(WebhookVerificationError):
        Webhook(WebhookSecret.generate().serialise()).verify(BODY, headers)

    theirs = Webhook(secret.serialise())
    now = dt.datetime.now(dt.timezone.utc)
    their_headers = {ID_HEADER: EVENT_ID, TIMESTAMP_HEADER: str(int(now.timestamp())),
                     SIGNATURE_HEADER: theirs.sign(EVENT_ID, now, BODY.decode())}
    assert verify([secret], BODY, their_headers) == EVENT_ID


def test_rotation_signs_with_every_secret_and_either_side_verifies():
    new, old = WebhookSecret.generate(), WebhookSecret.generate()
    (parsed_new, parsed_old) = parse_secrets(f"{new.serialise()}\n  {old.serialise()}")
    assert (parsed_new, parsed_old) == (new, old)
    headers = signature_headers([new, old], EVENT_ID, BODY)
    assert len(headers[SIGNATURE_HEADER].split(" ")) == 2
    for receiver_secret in (new, old):  # a receiver still on the old secret, or already on the new one
        assert verify([receiver_secret], BODY, headers) == EVENT_ID
        Webhook(receiver_secret.serialise()).verify(BODY, headers)
    with pytest.raises(SignatureError):
        verify([WebhookSecret.generate()], BODY, headers)
    assert verify([WebhookSecret.generate(), old], BODY, signature_headers([old], EVENT_ID, BODY)) == EVENT_ID


@pytest.mark.parametrize("change", [
    "body", "id", "timestamp", "stale", "future", "missing id", "missing timestamp", "missing signature",
    "superscript two", "arabic digit", "float", "negative", "empty signature", "other scheme only",
    "garbage signature", "too many signatures",
])
def test_anything_tampered_stale_or_malformed_is_refused_with_a_reason(secret, change):
    now = time.time()
    headers = signature_headers([secret], EVENT_ID, BODY, now=now)
    body = BODY
    good = headers[SIGNATURE_HEADER]
    stamp = headers[TIMESTAMP_HEADER]
    edits: dict[str, object] = {
        "body": lambda: BODY.replace(b"concern", b"concerN"),
        "id": {ID_HEADER: EVENT_ID[:-1] + "7"},
        "timestamp": {TIMESTAMP_HEADER: str(int(stamp) + 1)},
        "stale": {**signature_headers([secret], EVENT_ID, BODY, now=now - 301)},
        "future": {**signature_headers([secret], EVENT_ID, BODY, now=now + 301)},
        "missing id": {ID_HEADER: None},
        "missing timestamp": {TIMESTAMP_HEADER: None},
        "missing signature": {SIGNATURE_HEADER: None},
        "superscript two": {TIMESTAMP_HEADER: "²"},  # passes str.isdigit()
        "arabic digit": {TIMESTAMP_HEADER: "١٧٦٠٠٠٠٠٠٠"},  # int() reads it
        "float": {TIMESTAMP_HEADER: f"{int(stamp)}.0"},
        "negative": {TIMESTAMP_HEADER: f"-{stamp}"},
        "empty signature": {SIGNATURE_HEADER: " "},
        "other scheme only": {SIGNATURE_HEADER: good.replace("v1,", "v1a,")},
        "garbage signature": {SIGNATURE_HEADER: "v1,%%%% v1 , ,v1 v1,=="},
        "too many signatures": {SIGNATURE_HEADER: " ".join(["v1,AAAA"] * 16 + [good])},
    }
    edit = edits[change]
    if callable(edit):
        body = edit()
    else:
        headers = {k: v for k, v in {**headers, **edit}.items() if v is not None}
    with pytest.raises(SignatureError) as refused:
        verify([secret], body, headers, now=now)
    assert str(refused.value)
    assert secret.serialise() not in str(refused.value)


def test_the_checked_headers_are_case_insensitive_and_a_good_signature_among_garbage_passes(secret):
    headers = signature_headers([secret], EVENT_ID, BODY)
    upper = {name.title(): value for name, value in headers.items()}
    assert verify([secret], BODY, upper) == EVENT_ID
    mixed = {**headers, SIGNATURE_HEADER: "v1a,xyz v1,%%% " + headers[SIGNATURE_HEADER]}
    assert verify([secret], BODY, mixed) == EVENT_ID


@pytest.mark.parametrize("text", ["", "   ", "plain-passphrase-of-enough-length-0123456789", "whsec_", "whsec_!!!!",
                                  "whsec_" + base64.b64encode(b"short").decode(),
                                  "whsec_" + base64.b64encode(b"x" * 65).decode()])
def test_a_secret_must_be_whsec_base64_of_24_to_64_bytes_and_is_never_shown(text):
    with pytest.raises(InvalidSecretError) as refused:
        parse_secrets(text)
    if len(text) > 8:
        assert text not in str(refused.value)


def test_a_secret_round_trips_and_its_repr_hides_the_key():
    secret = WebhookSecret.generate()
    assert WebhookSecret.parse(secret.serialise()) == secret
    unpadded = secret.serialise().rstrip("=")
    assert WebhookSecret.parse(unpadded) == secret  # as the standardwebhooks library accepts it
    assert secret.serialise() not in repr(secret) and repr(secret.key) not in repr(secret)


def test_an_id_that_could_break_the_signed_content_is_not_signed(secret):
    for bad in ("a.b", "", "x" * 257, "id with space", "naïve"):
        with pytest.raises(SignatureError):
            signature_headers([secret], bad, BODY)


@given(headers=st.dictionaries(st.sampled_from([ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER, "other"]),
                               st.text(max_size=80)),
       body=st.binary(max_size=200))
def test_verify_only_ever_raises_signature_error(headers, body):
    secret = WebhookSecret(b"k" * 32)
    try:
        verify([secret], body, headers)
    except SignatureError:
        pass
