"""Every Kafka client the production code makes, configured in one place, one configuration per role.

A role says what a producer carries and so how it must be acknowledged and batched:

* `bulk`: marks from `reconnect ingest` and the live simulator: throughput matters, so batches
  linger a little; acks=all so a file reported as published is on the broker.
* `records`: everything that records a decision or a failure (interventions, dead letters,
  outcomes, re-keyed marks, webhook dead letters): acks=all, a short linger.

Consumers share the group timing of the settings (session timeout, heartbeat, fetch wait), so
a change there reaches the worker, the bridge and the caseload alike. The Faust worker's own
clients take the same values through `streams.app.create_app`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from streams.settings import Settings

# The largest record any producer may send: a dead letter keeps at most a few KiB of raw input,
# but a poison message re-keyed as is can be up to the marks limit.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


def connect_ms(settings: Settings) -> int:
    """How long a kafka-python client waits for the brokers (else 30 s): the settings' retry window."""
    return max(int(settings.broker_connect_retry_s * 1000), 1000)


class ProducerRole(StrEnum):
    BULK = "bulk"
    RECORDS = "records"


def producer_options(settings: Settings, role: ProducerRole) -> dict[str, Any]:
    """kafka-python producer options for a role (aiokafka takes the same values, see below)."""
    linger = 20 if role is ProducerRole.BULK else settings.producer_linger_ms
    return {
        "bootstrap_servers": settings.bootstrap_list,
        "client_id": f"{settings.app_id}-{role.value}",
        "acks": "all",
        "linger_ms": linger,
        "batch_size": 256 * 1024 if role is ProducerRole.BULK else 64 * 1024,
        "retries": 5,
        "max_request_size": MAX_REQUEST_BYTES,
        "request_timeout_ms": settings.producer_request_timeout_ms,
        # Blocks a send while the broker is unreachable, as long as clients retry at start.
        "max_block_ms": connect_ms(settings),
        "bootstrap_timeout_ms": connect_ms(settings),
    }


def kafka_producer(settings: Settings, role: ProducerRole, **overrides: Any):
    """A kafka-python producer. Its api_version is left automatic: pinning it low makes sends fail
    silently on some brokers (see the embedded broker notes)."""
    from kafka import KafkaProducer

    return KafkaProducer(**{**producer_options(settings, role), **overrides})


def consumer_options(settings: Settings, *, group_id: str | None, role: str) -> dict[str, Any]:
    """kafka-python consumer options: manual commits, the group timing of the settings."""
    session_ms = int(settings.session_timeout_s * 1000)
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "group_id": group_id,
        "client_id": f"{settings.app_id}-{role}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": int(settings.heartbeat_interval_s * 1000),
        "request_timeout_ms": max(30_000, session_ms + 5_000),
        "fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
        "fetch_max_bytes": settings.consumer_fetch_max_bytes,
        "max_partition_fetch_bytes": settings.consumer_max_partition_fetch_bytes,
    }
    options["bootstrap_timeout_ms"] = connect_ms(settings)
    if settings.consumer_max_poll_records is not None:
        options["max_poll_records"] = settings.consumer_max_poll_records
    return options


def kafka_consumer(settings: Settings, *topics: str, group_id: str | None, role: str, **overrides: Any):
    from kafka import KafkaConsumer

    return KafkaConsumer(*topics, **{**consumer_options(settings, group_id=group_id, role=role), **overrides})


def aiokafka_producer(settings: Settings, role: ProducerRole, **overrides: Any):
    """An aiokafka producer with the role's acknowledgement and linger."""
    from aiokafka import AIOKafkaProducer

    options = producer_options(settings, role)
    return AIOKafkaProducer(**{
        "bootstrap_servers": options["bootstrap_servers"], "client_id": options["client_id"],
        "acks": options["acks"], "linger_ms": options["linger_ms"], "max_batch_size": settings.producer_max_batch_bytes,
        "max_request_size": MAX_REQUEST_BYTES, "request_timeout_ms": options["request_timeout_ms"], **overrides,
    })
