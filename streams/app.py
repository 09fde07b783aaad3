"""The Faust app, created in this one place; agents and views are autodiscovered."""

from __future__ import annotations

import faust

from streams.settings import Settings

settings = Settings()

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server}" for server in settings.bootstrap_list],
    store="memory://",
    autodiscover=["streams.agents", "streams.views"],
    origin="streams",
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    # Topics are created explicitly (ops/topics.toml) with the counts the app expects.
    topic_allow_declare=True,
    processing_guarantee="at_least_once",
    # With micro-batches (take_events), waiting for the stream to drain before a rebalance can
    # hang the survivor of a killed worker ("Heartbeat failed ... rebalancing" forever). Not
    # waiting is safe here: unacknowledged marks are redelivered and state updates are idempotent.
    stream_wait_empty=False,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.heartbeat_interval_s,
    consumer_auto_offset_reset="earliest",
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    datadir=str(settings.data_dir),
    producer_linger_ms=5,
)
