"""The bridge's Prometheus metrics, on their own registry. Labels are bounded; none carries a pupil id.

Every record read ends in exactly one place, so at any moment
`read = delivered + dead_lettered + returned + in_flight`, where `returned` counts records handed
back unfinished (a stop or a rebalance) to be read again; once idle, in_flight is 0.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.outcomes import WebhookFailure
from streams.webhook.http import NoResponse, Verdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
STATUS_CLASSES = ("2xx", "3xx", "4xx", "429", "5xx", *(kind.value for kind in NoResponse))


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.read = Counter("reconnect_webhook_records_read_total",
                            "Records read from the interventions topic (a record read again after a stop or a "
                            "rebalance counts again).", registry=r)
        self.delivered = Counter("reconnect_webhook_delivered_total",
                                 "Interventions the webhook accepted (2xx).", registry=r)
        self.dead_lettered = Counter("reconnect_webhook_dead_lettered_total",
                                     "Records sent to the webhook dead-letter topic, by reason.", ["reason"],
                                     registry=r)
        self.returned = Counter("reconnect_webhook_records_returned_total",
                                "Records left unfinished by a stop or a rebalance: not committed, read again "
                                "later.", registry=r)
        self.in_flight = Gauge("reconnect_webhook_records_in_flight",
                               "Records read and not yet delivered, dead-lettered or returned.", registry=r)
        self.attempts = Counter("reconnect_webhook_attempts_total",
                                "HTTP delivery attempts, by verdict and status class.", ["verdict", "status_class"],
                                registry=r)
        self.delivery_seconds = Histogram("reconnect_webhook_delivery_seconds",
                                          "From the first attempt to the webhook accepting the event, retries "
                                          "included.", buckets=LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("reconnect_webhook_request_seconds", "Duration of one HTTP attempt.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.end_to_end_seconds = Histogram("reconnect_webhook_end_to_end_seconds",
                                            "From the event being appended to its topic to the webhook accepting "
                                            "it.", buckets=LATENCY_BUCKETS, registry=r)
        self.retry_wait_seconds = Counter("reconnect_webhook_retry_wait_seconds_total",
                                          "Time spent waiting between attempts (backoff and Retry-After).", registry=r)
        self.retrying = Gauge("reconnect_webhook_retrying", "1 while an event is waiting to be retried.", registry=r)
        self.committed_offset = Gauge("reconnect_webhook_committed_offset",
                                      "Next offset committed by the bridge, by partition.", ["partition"], registry=r)
        self.last_delivery = Gauge("reconnect_webhook_last_delivery_timestamp_seconds",
                                   "Unix time of the last successful delivery.", registry=r)
        for verdict in Verdict:
            for status_class in STATUS_CLASSES:
                if _possible(verdict, status_class):
                    self.attempts.labels(verdict=verdict.value, status_class=status_class)
        for reason in WebhookFailure:
            self.dead_lettered.labels(reason=reason.value)

    def totals(self) -> dict[str, float]:
        """Each counter summed over its labels, and the in-flight gauge (for reports and tests)."""
        def total(sample_name: str) -> float:
            return sum(sample.value for family in self.registry.collect() for sample in family.samples
                       if sample.name == sample_name)
        return {"read": total("reconnect_webhook_records_read_total"),
                "delivered": total("reconnect_webhook_delivered_total"),
                "dead_lettered": total("reconnect_webhook_dead_lettered_total"),
                "returned": total("reconnect_webhook_records_returned_total"),
                "in_flight": total("reconnect_webhook_records_in_flight"),
                "attempts": total("reconnect_webhook_attempts_total")}

def _possible(verdict: Verdict, status_class: str) -> bool:
    """Which (verdict, status class) pairs can occur, so each is exported at zero from the start."""
    return {Verdict.DELIVERED: status_class == "2xx", Verdict.REDIRECTED: status_class == "3xx",
            Verdict.REJECTED: status_class == "4xx"}.get(verdict, status_class not in ("2xx", "3xx"))
