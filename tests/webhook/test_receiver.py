"""The reference receiver, attacked: unsigned, tampered, replayed and garbage requests, slow clients,
chunked and huge bodies, too many connections. It answers each with a 4xx (or 503), never crashes,
and keeps serving genuine deliveries."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import urllib.request

from standardwebhooks.webhooks import Webhook

from streams.webhook.receiver import ReceiverConfig
from streams.webhook.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSecret, signature_headers


def _request(receiver, body: bytes, headers: dict[str, str], *, extra: bytes = b"", chunked: bool = False) -> bytes:
    lines = [b"POST /webhook HTTP/1.1", b"Host: " + receiver.host.encode(), b"Content-Type: application/json"]
    lines += [name.encode() + b": " + value.encode("utf-8") for name, value in headers.items()]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]) if part) + b"0\r\n\r\n"
    else:
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n" + payload


def test_it_binds_loopback_by_default(start_receiver):
    assert ReceiverConfig().host == "127.0.0.1"
    receiver = start_receiver()
    assert receiver.base_url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(receiver.base_url + "/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {"ok": True}


def test_unsigned_tampered_stale_and_foreign_deliveries_get_401_and_duplicates_are_stored_once(
        start_receiver, secret, make_event, post):
    event = make_event(1)
    body = event.model_dump_json().encode()
    next_secret = WebhookSecret.generate()
    receiver = start_receiver(secrets=[secret, next_secret])  # during a rotation: either is accepted
    good = signature_headers([secret], event.event_id, body)
    assert post(receiver.url, body.replace(b'"tier":', b'"tier": ', 1), good)[0] == 401  # body changed after signing
    assert post(receiver.url, body, {k: v for k, v in good.items() if k != SIGNATURE_HEADER})[0] == 401
    assert post(receiver.url, body, {k: v for k, v in good.items() if k != TIMESTAMP_HEADER})[0] == 401
    assert post(receiver.url, body, signature_headers([WebhookSecret.generate()], event.event_id, body))[0] == 401
    replayed = signature_headers([secret], event.event_id, body, now=time.time() - 3600)
    assert post(receiver.url, body, replayed)[0] == 401  # a captured request replayed an hour later
    assert post(receiver.url, body, {**good, TIMESTAMP_HEADER: str(int(good[TIMESTAMP_HEADER]) + 1)})[0] == 401
    assert receiver.summary()["count"] == 0 and receiver.summary()["unauthorised"] == 6

    status, answer, _ = post(receiver.url, body, good)
    assert (status, answer.get("stored")) == (200, True)
    status, answer, _ = post(receiver.url, body, signature_headers([next_secret], event.event_id, body))
    assert (status, answer.get("duplicate")) == (200, True)
    other = make_event(2)
    assert post(receiver.url, body, signature_headers([secret], other.event_id, body))[0] == 400  # id is not the event's
    summary = receiver.summary()
    assert (summary["count"], summary["event_ids"], summary["duplicates"]) == (1, [event.event_id], 1)
    with urllib.request.urlopen(receiver.base_url + "/received", timeout=5) as response:
        listing = response.read()
    assert json.loads(listing)["count"] == 1 and b"SCHB-P0001" not in listing  # ids and counts, no content


def test_a_sender_using_the_standardwebhooks_library_is_accepted(start_receiver, secret, make_event, post):
    event = make_event(4, school="SCHL")
    body = event.model_dump_json()
    now = dt.datetime.now(dt.timezone.utc)
    headers = {ID_HEADER: event.event_id, TIMESTAMP_HEADER: str(int(now.timestamp())),
               SIGNATURE_HEADER: Webhook(secret.serialise()).sign(event.event_id, now, body)}
    receiver = start_receiver()
    assert post(receiver.url, body.encode(), headers)[0] == 200
    assert receiver.summary()["event_ids"] == [event.event_id]


def test_malformed_headers_get_a_4xx_and_never_crash_it(start_receiver, secret, make_event, raw_exchange, post):
    event = make_event(2)
    body = event.model_dump_json().encode()
    receiver = start_receiver()
    good = signature_headers([secret], event.event_id, body)
    cases = {
        "superscript timestamp": ({**good, TIMESTAMP_HEADER: "²"}, b"", {401}),  # passes str.isdigit()
        "arabic-indic timestamp": ({**good, TIMESTAMP_HEADER: "١٧٦٠٠٠٠٠٠٠"}, b"", {401}),
        "non-ascii id": ({**good, ID_HEADER: "é" * 10}, b"", {401}),
        "huge timestamp": ({**good, TIMESTAMP_HEADER: "9" * 400}, b"", {401}),
        "control character": ({**good, ID_HEADER: "a\x01b"}, b"", {400, 401}),
        "header too large": (good, b"X-Padding: " + b"a" * 40_000 + b"\r\n", {400, 431}),
        "malformed content-length": (good, b"Content-Length: 12abc\r\n", {400}),
    }
    for name, (headers, extra, expected) in cases.items():
        status, _ = raw_exchange(receiver, _request(receiver, body, headers, extra=extra))
        assert status in expected, name
    assert receiver.summary()["count"] == 0
    assert post(receiver.url, body, signature_headers([secret], event.event_id, body))[0] == 200  # still serving


def test_chunked_bodies_are_read_as_one_body_and_limited_like_any_other(start_receiver, secret, make_event,
                                                                         raw_exchange, post):
    event = make_event(3)
    body = event.model_dump_json().encode()
    receiver = start_receiver(max_body_bytes=4096)
    assert len(body) < 4096
    headers = signature_headers([secret], event.event_id, body)
    status, response = raw_exchange(receiver, _request(receiver, body, headers, chunked=True))
    assert status == 200 and b'"stored":true' in response
    assert receiver.summary()["requests"] == 1  # the chunks were not read as a second request

    huge = b'{"event_id": "' + b"x" * 10_000 + b'"}'
    big_headers = signature_headers([secret], event.event_id, huge)
    assert raw_exchange(receiver, _request(receiver, huge, big_headers, chunked=True))[0] == 413
    assert post(receiver.url, huge, big_headers)[0] == 413
    # A declared length over the limit is refused before the body is sent at all.
    announced = _request(receiver, b"", headers).replace(b"Content-Length: 0", b"Content-Length: 999999999")
    assert raw_exchange(receiver, announced)[0] == 413
    assert receiver.summary()["count"] == 1


def test_a_client_trickling_its_headers_is_cut_off_while_others_are_served(start_receiver, secret, make_event, post,
                                                                            wait_until):
    receiver = start_receiver(header_timeout_s=1.0)
    event = make_event(5)
    body = event.model_dump_json().encode()
    with socket.create_connection((receiver.host, receiver.port), timeout=10) as slow:
        slow.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()

        def closed_by_server() -> bool:
            try:
                slow.sendall(b"X")  # a byte at a time, as a slowloris client does
                slow.settimeout(0.3)
                return slow.recv(1) == b""
            except TimeoutError:
                return False
            except OSError:  # reset: closed
                return True

        assert post(receiver.url, body, signature_headers([secret], event.event_id, body))[0] == 200
        wait_until(closed_by_server, timeout=8, interval=0.3, what="the server to drop the trickling client")
        assert time.monotonic() - started < 8


def test_a_body_that_stalls_gets_408(start_receiver, secret, make_event, raw_exchange):
    receiver = start_receiver(body_timeout_s=1.0)
    event = make_event(6)
    body = event.model_dump_json().encode()
    request = _request(receiver, body, signature_headers([secret], event.event_id, body))
    started = time.monotonic()
    status, _ = raw_exchange(receiver, request[: -len(body) + 10], timeout=10)  # the body's first bytes only
    assert status == 408 and time.monotonic() - started < 8
    assert receiver.summary()["count"] == 0


def test_connections_beyond_the_bound_get_503(start_receiver, secret, make_event, post, wait_until):
    receiver = start_receiver(max_concurrency=3, header_timeout_s=30)
    event = make_event(8)
    body = event.model_dump_json().encode()
    idle = [socket.create_connection((receiver.host, receiver.port), timeout=5) for _ in range(3)]
    try:
        assert post(receiver.url, body, signature_headers([secret], event.event_id, body))[0] == 503
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: post(receiver.url, body, signature_headers([secret], event.event_id, body))[0] == 200,
               timeout=10, what="the receiver to accept once the idle connections are gone")
