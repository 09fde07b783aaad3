"""Waiting for Kafka at start-up: a clear line per attempt and a bounded, growing back-off,
instead of a client's traceback the moment the broker is not there yet."""

from __future__ import annotations

import logging
import socket
import time

from streams.settings import Settings

log = logging.getLogger("reconnect.connect")
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0


class BrokerUnavailableError(RuntimeError):
    pass


def wait_for_kafka(settings: Settings, *, sleep=time.sleep, clock=time.monotonic) -> int:
    """Return the number of attempts it took to reach the brokers; raise after the deadline."""
    deadline = clock() + settings.broker_connect_retry_s
    backoff = FIRST_BACKOFF_S
    attempt = 0
    while True:
        attempt += 1
        try:
            _probe(settings.bootstrap_list)
            if attempt > 1:
                log.warning("Kafka at %s is reachable after %d attempts.", settings.kafka_bootstrap_servers, attempt)
            return attempt
        except OSError as exc:
            remaining = deadline - clock()
            reason = exc.strerror or type(exc).__name__
            if remaining <= 0:
                raise BrokerUnavailableError(
                    f"Kafka at {settings.kafka_bootstrap_servers} was not reachable after {attempt} attempts over "
                    f"{settings.broker_connect_retry_s:.0f}s ({reason}). Check KAFKA_BOOTSTRAP_SERVERS and that the "
                    "broker is up; RECONNECT_BROKER_CONNECT_RETRY_S sets how long to keep trying."
                ) from None
            wait = min(backoff, MAX_BACKOFF_S, remaining)
            log.warning("Kafka at %s not reachable yet (%s); retrying in %.1fs (attempt %d, giving up in %.0fs).",
                        settings.kafka_bootstrap_servers, reason, wait, attempt, remaining)
            sleep(wait)
            backoff *= 2


def _probe(servers: list[str], timeout: float = 3.0) -> None:
    """Succeed if any bootstrap server accepts a connection (the clients then negotiate the rest)."""
    error: OSError = ConnectionRefusedError("no bootstrap servers configured")
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout):
                return
        except OSError as exc:
            error = exc
    raise error
