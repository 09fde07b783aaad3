"""Prometheus metrics of the worker. Labels are bounded: school, reason, kind, tier, partition.

No label ever carries a pupil id (privacy, and unbounded cardinality).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info

# Buckets in seconds, from a micro-batch's sub-millisecond work to a stalled pipeline.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SCORING_BUCKETS = (0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1)


class WorkerMetrics:
    """All the worker's metrics, registered on one registry (the process default unless given)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.marks_consumed = Counter(
            "reconnect_marks_consumed_total", "Register-mark messages read from the marks topic.",
            registry=registry,
        )
        self.marks_applied = Counter(
            "reconnect_marks_applied_total",
            "Valid marks applied to per-pupil state, by outcome (new, amended, duplicate).",
            ["outcome"], registry=registry,
        )
        self.marks_rekeyed = Counter(
            "reconnect_marks_rekeyed_total",
            "Marks that arrived keyed by something other than their pupil and were re-published keyed by pupil.",
            registry=registry,
        )
        self.marks_dead_lettered = Counter(
            "reconnect_marks_dead_lettered_total", "Marks sent to the dead-letter topic, by reason.",
            ["reason"], registry=registry,
        )
        self.interventions = Counter(
            "reconnect_interventions_published_total", "Intervention events published, by kind, tier and school.",
            ["kind", "tier", "school_id"], registry=registry,
        )
        self.processing_latency = Histogram(
            "reconnect_processing_latency_seconds",
            "Time from a mark being appended to the marks topic to its decision being made.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.end_to_end_latency = Histogram(
            "reconnect_end_to_end_latency_seconds",
            "Time from a mark being appended to the marks topic to the intervention it raised being published.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.batch_seconds = Histogram(
            "reconnect_batch_processing_seconds", "Wall time to process one micro-batch of marks.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.batch_size = Histogram(
            "reconnect_batch_size_marks", "Marks per micro-batch.",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500), registry=registry,
        )
        self.scoring_seconds_per_mark = Histogram(
            "reconnect_scoring_seconds_per_mark", "Model scoring time per mark, micro-batched.",
            buckets=SCORING_BUCKETS, registry=registry,
        )
        self.pupils_tracked = Gauge(
            "reconnect_pupils_tracked", "Pupils with state in this worker's table partitions.", registry=registry,
        )
        self.last_mark_processed = Gauge(
            "reconnect_last_mark_processed_timestamp_seconds", "Unix time at which the last mark was processed.",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "reconnect_consumer_lag_messages",
            "Marks not yet committed by this worker: high watermark minus committed offset.",
            ["partition"], registry=registry,
        )
        self.partitions_assigned = Gauge(
            "reconnect_partitions_assigned", "Partitions of the marks topic this worker owns now.", registry=registry,
        )
        self.offsets_skipped = Counter(
            "reconnect_consumer_offsets_skipped_total",
            "Offsets the consumer passed over as a gap in the log: counted as handled with no record delivered. "
            "Compaction and transaction markers leave such gaps; the marks topic has neither, so there any is a "
            "mark that may never have been handled.", ["topic"], registry=registry,
        )
        self.rebalances = Counter(
            "reconnect_rebalances_total", "Consumer-group rebalances this worker has taken part in.",
            registry=registry,
        )
        self.outcomes = Counter(
            "reconnect_outcomes_total", "Outcome events applied to pupil state, by action and result.",
            ["action", "result"], registry=registry,
        )
        self.model_info = Info("reconnect_model", "The loaded risk model.", registry=registry)
        self.gc_frozen_objects = Gauge(
            "reconnect_worker_gc_frozen_objects",
            "Objects in the cycle collector's permanent generation: what was alive once the model loaded, "
            "which full collections no longer walk.", registry=registry,
        )
        self.model_loaded = Gauge(
            "reconnect_model_loaded", "1 when a risk model is loaded and scoring.", registry=registry,
        )
        self.model_loaded_timestamp = Gauge(
            "reconnect_model_loaded_timestamp_seconds", "Unix time the current model was loaded.", registry=registry,
        )
        self.model_reloads = Counter(
            "reconnect_model_reloads_total", "Model load attempts, by result (loaded, refused).", ["result"],
            registry=registry,
        )
        self.model_refused = Gauge(
            "reconnect_model_refused",
            "1 when the model file on disk was refused (untrusted, corrupt or incompatible); it is not tried "
            "again until it changes, and the loaded model, if any, keeps scoring.", registry=registry,
        )
