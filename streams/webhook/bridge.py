"""`reconnect bridge`: the consumer loop that feeds the interventions topic into the webhook sink.

A kafka-python consumer in its own group (`<app_id>-webhook-bridge`) polls a batch, adds each record
to the `WebhookSink`, flushes it, and only then commits the offsets the flush reports finished.
While an event waits between attempts the consumer keeps polling with its partitions paused, so it
stays in its group however long a receiver asks it to wait; a rebalance or a stop cuts the wait
short, and what was not finished is read again (by this bridge or the partition's new owner).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, field

from streams.clients import ProducerRole, kafka_consumer, kafka_producer
from streams.settings import Settings
from streams.webhook.http import WebhookClient
from streams.webhook.metrics import BridgeMetrics
from streams.webhook.retry import RetryPolicy
from streams.webhook.signing import parse_secrets
from streams.webhook.sink import DeadLetterWriter, FlushResult, Interrupted, WebhookSink

log = logging.getLogger(__name__)

CONSUMER_ROLE = "webhook-bridge"
BATCH_MAX_RECORDS = 100  # per poll: a flush, and so a commit, at least every 100 records
POLL_TIMEOUT_MS = 250
COMMIT_TRIES = 5
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def group_id(settings: Settings) -> str:
    return f"{settings.app_id}-webhook-bridge"


@dataclass(frozen=True)
class RunOptions:
    """How long to run and what to attach; the delivery itself is configured by the settings."""

    stop_when_idle_s: float | None = None  # stop after this long with nothing to deliver (demos, tests)
    max_run_s: float | None = None
    from_latest: bool = False  # a new consumer group starts at the end of the topic, not the beginning
    serve_metrics: bool = True  # on settings.bridge_metrics_port (when set), bound to settings.web_bind
    handle_signals: bool = True  # SIGTERM and SIGINT stop the bridge after the current attempt


@dataclass
class BridgeReport:
    delivered: int = 0
    dead_lettered: int = 0
    attempts: int = 0
    returned: int = 0  # unfinished at a stop or a rebalance: not committed, read again
    read: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    stopped_because: str = ""

    @classmethod
    def from_metrics(cls, metrics: BridgeMetrics, stopped_because: str) -> BridgeReport:
        totals = metrics.totals()
        reasons = {sample.labels["reason"]: int(sample.value) for family in metrics.registry.collect()
                   for sample in family.samples
                   if sample.name == "reconnect_webhook_dead_lettered_total" and sample.value}
        return cls(delivered=int(totals["delivered"]), dead_lettered=int(totals["dead_lettered"]),
                   attempts=int(totals["attempts"]), returned=int(totals["returned"]), read=int(totals["read"]),
                   reasons=reasons, stopped_because=stopped_because)

    def line(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        return (f"read {self.read}, delivered {self.delivered}, dead-lettered {self.dead_lettered}"
                + (f" ({reasons})" if reasons else "")
                + f", attempts {self.attempts}, returned unfinished {self.returned}; stopped: {self.stopped_because}")


class WebhookBridge:
    def __init__(self, settings: Settings, options: RunOptions, stop_event: threading.Event,
                 metrics: BridgeMetrics) -> None:
        if not settings.webhook_url or settings.webhook_secret is None:
            raise ValueError("the bridge needs RECONNECT_WEBHOOK_URL and RECONNECT_WEBHOOK_SECRET")
        self.settings = settings
        self.options = options
        self.stop_event = stop_event
        self.metrics = metrics
        self.policy = RetryPolicy.from_settings(settings)
        self.rng = random.Random()
        self.client = WebhookClient(settings.webhook_url, self.policy.timeout_s)
        if self.client.scheme == "http" and self.client.host not in LOOPBACK_HOSTS:
            log.warning("the webhook URL is plain http to %s: events carry pupil data, use https",
                        self.client.display_host)
        secrets = parse_secrets(settings.webhook_secret.get_secret_value())
        self._generation = 0
        self._rebalancing = False
        overrides = {"auto_offset_reset": "latest" if options.from_latest else "earliest"}
        if settings.consumer_max_poll_records is None:
            overrides["max_poll_records"] = BATCH_MAX_RECORDS
        self.consumer = kafka_consumer(settings, group_id=group_id(settings), role=CONSUMER_ROLE, **overrides)
        try:
            self.producer = kafka_producer(settings, ProducerRole.RECORDS)
        except Exception:
            self.consumer.close(autocommit=False)
            raise
        dead_letters = DeadLetterWriter(self.producer, settings.topic_webhook_dead_letter, self.wait, self.policy,
                                        self.rng)
        self.sink = WebhookSink(self.client, secrets, self.policy, dead_letters, metrics, self.wait, self.rng)

    # Group membership -----------------------------------------------------------------------------
    def _listener(self):
        from kafka import ConsumerRebalanceListener

        bridge = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                bridge._generation += 1
                bridge._rebalancing = True

            def on_partitions_assigned(self, assigned):
                bridge._generation += 1
                bridge._rebalancing = False
                log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))

        return Listener()

    def _poll_paused(self, seconds: float) -> None:
        """One poll with every assigned partition paused: heartbeats, rebalances and commits progress,
        and no record is consumed (one from a partition assigned meanwhile is given back)."""
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(*assigned)
        try:
            got = self.consumer.poll(timeout_ms=max(1, int(seconds * 1000)), update_offsets=False)
        finally:
            paused = self.consumer.paused()
            if paused:
                self.consumer.resume(*paused)
        for tp, records in got.items():
            if records:
                self.consumer.seek(tp, records[0].offset)

    def wait(self, seconds: float) -> None:
        """Wait, polling with every partition paused so the group membership stays alive; raise
        Interrupted on a stop or a rebalance (the sink's Waiter)."""
        generation = self._generation
        deadline = time.monotonic() + seconds
        while True:
            if self.stop_event.is_set():
                raise Interrupted("stop")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            slice_s = min(remaining, 0.25)
            before = time.monotonic()
            self._poll_paused(slice_s)
            if self._generation != generation:
                raise Interrupted("rebalance")
            spent = time.monotonic() - before
            if spent < slice_s * 0.5:  # the poll returned early: do not spin
                self.stop_event.wait(min(slice_s - spent, max(0.0, deadline - time.monotonic())))

    # Offsets ----------------------------------------------------------------------------------------
    def _commit(self, result: FlushResult) -> None:
        """Commit what the flush finished, for the partitions this bridge still owns. A commit refused
        during a rebalance is retried once the group has settled (polling, paused, drives it); what is
        finally not committed is delivered again later and de-duplicated by the receiver."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        assigned = self.consumer.assignment()
        for (topic, partition), offset in result.resume.items():
            if TopicPartition(topic, partition) in assigned:
                self.consumer.seek(TopicPartition(topic, partition), offset)
        for attempt in range(1, COMMIT_TRIES + 1):
            assigned = self.consumer.assignment()
            offsets = {TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                       for (topic, partition), offset in result.committable.items()
                       if TopicPartition(topic, partition) in assigned}
            if not offsets:
                return
            try:
                self.consumer.commit(offsets)
            except KafkaError as exc:
                log.warning("commit failed (%s), try %d of %d", type(exc).__name__, attempt, COMMIT_TRIES)
                self._poll_paused(0.5 * attempt)
                continue
            for tp, meta in offsets.items():
                self.metrics.committed_offset.labels(partition=str(tp.partition)).set(meta.offset)
            return
        log.error("commit failed %d times; the records will be delivered again (de-duplicated)", COMMIT_TRIES)

    # The loop ----------------------------------------------------------------------------------------
    def run(self) -> str:
        """Run until stopped; returns why it stopped."""
        self.consumer.subscribe([self.settings.topic_interventions], listener=self._listener())
        started = time.monotonic()
        idle_since: float | None = None
        log.info("bridge: %s -> %s (group %s)", self.settings.topic_interventions, self.client.display_host,
                 group_id(self.settings))
        while True:
            if self.stop_event.is_set():
                return "stop requested"
            if self.options.max_run_s is not None and time.monotonic() - started >= self.options.max_run_s:
                return f"ran {self.options.max_run_s:g}s"
            generation = self._generation
            batch = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            if batch:
                for records in batch.values():
                    for record in records:
                        self.sink.add(record)
                result = self.sink.flush()
                self._commit(result)
                idle_since = None
                if result.interrupted == "stop":
                    return "stop requested (mid-delivery; unfinished events stay uncommitted)"
                continue
            # Idle time counts only while partitions are assigned and the group is settled.
            if not self.consumer.assignment() or self._rebalancing or self._generation != generation:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif (self.options.stop_when_idle_s is not None
                  and time.monotonic() - idle_since >= self.options.stop_when_idle_s):
                return f"idle {self.options.stop_when_idle_s:g}s"

    def close(self) -> None:
        self.client.close()
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:  # closing must not mask why we stopped
            log.warning("consumer close: %s", type(exc).__name__)
        try:
            self.producer.close(timeout=10)
        except Exception as exc:
            log.warning("producer close: %s", type(exc).__name__)


def run_bridge(settings: Settings, options: RunOptions = RunOptions(), *, stop_event: threading.Event | None = None,
               metrics: BridgeMetrics | None = None) -> BridgeReport:
    """Run the webhook bridge until SIGTERM/SIGINT, `stop_event`, or the options' idle or run limit.

    The report is read from `metrics` (a fresh registry unless one is given).
    """
    stop_event = stop_event or threading.Event()
    metrics = metrics or BridgeMetrics()
    server = None
    if options.serve_metrics and settings.bridge_metrics_port is not None:
        from prometheus_client import start_http_server

        server, _ = start_http_server(settings.bridge_metrics_port, addr=settings.web_bind, registry=metrics.registry)
        log.info("bridge metrics on http://%s:%d/metrics", settings.web_bind, settings.bridge_metrics_port)
    previous = {}
    if options.handle_signals and threading.current_thread() is threading.main_thread():
        def on_signal(signum, _frame):
            log.info("signal %s: finishing the current attempt, then stopping", signum)
            stop_event.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    bridge = None
    try:
        bridge = WebhookBridge(settings, options, stop_event, metrics)
        stopped_because = bridge.run()
    finally:
        if bridge is not None:
            bridge.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None:
            server.shutdown()
            server.server_close()
    return BridgeReport.from_metrics(metrics, stopped_because)
