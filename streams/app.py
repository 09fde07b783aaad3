"""The Faust app, built by one function from the settings: `create_app(settings)`.

Nothing is read or built at import: the worker command builds the settings once, calls
`create_app`, and starts the app with Faust's Worker. Tests build apps the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.batching import ReconnectStream
from streams.faust_tuning import TunedTransport
from streams.runtime import Runtime
from streams.settings import Settings


class ReconnectApp(faust.App):
    """A Faust app whose Kafka consumer takes every knob from the settings (streams.faust_tuning)."""

    reconnect_settings: Settings
    reconnect_parts: WorkerParts
    # Channels whose messages the drain loop queues directly (streams.faust_tuning, streams.batching).
    reconnect_bulk_channels: set

    def _new_transport(self):
        return TunedTransport(self.conf.broker_consumer, self)


@dataclass
class WorkerParts:
    """What the agents and views share: the settings, the runtime, the topics and the table."""

    settings: Settings
    runtime: Runtime
    marks: faust.TopicT
    interventions: faust.TopicT
    dead_letter: faust.TopicT
    outcomes: faust.TopicT
    table: faust.types.TableT
    agents: dict[str, faust.types.AgentT] | None = None


def _bytes_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    # Payloads stay bytes: the worker validates marks itself, so a malformed message becomes a
    # dead letter instead of a crashed stream.
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=partitions)


def create_app(settings: Settings, runtime: Runtime | None = None) -> ReconnectApp:
    """The worker's Faust app with its topics, table, agents, timers and web views."""
    from streams import agents, views

    app = ReconnectApp(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_list],
        store="memory://",
        autodiscover=False,
        Stream=ReconnectStream,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        # With micro-batches, waiting for the stream to drain before a rebalance can hang the
        # survivor of a killed worker ("Heartbeat failed ... rebalancing" forever). Not waiting is
        # safe here: unacknowledged marks are redelivered and state updates are idempotent.
        stream_wait_empty=False,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_max_poll_records=settings.consumer_max_poll_records,
        consumer_max_fetch_size=settings.consumer_max_partition_fetch_bytes,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        producer_request_timeout=settings.producer_request_timeout_ms / 1000,
        producer_acks=-1,
        # The web server carries pupil data behind a token (streams.views); it listens on
        # loopback unless the deployment says otherwise, and Faust's own table and router pages,
        # which would serve raw pupil state to anyone, are off.
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        datadir=str(settings.data_dir),
    )
    app.reconnect_settings = settings
    app.reconnect_bulk_channels = set()
    partitions = settings.topic_partitions
    parts = WorkerParts(
        settings=settings,
        runtime=runtime or Runtime(settings),
        marks=_bytes_topic(app, settings.topic_marks, partitions),
        interventions=_bytes_topic(app, settings.topic_interventions, partitions),
        dead_letter=_bytes_topic(app, settings.topic_dead_letter, partitions),
        outcomes=_bytes_topic(app, settings.topic_outcomes, partitions),
        # Values are PupilState's compact bytes, written by streams.states and our own changelog writer.
        table=app.Table("pupil-state", default=None, key_type=str, value_type=bytes, partitions=partitions,
                        help="Per-pupil register sessions (keyed by date and session), year totals and "
                             "alert-policy state."),
    )
    parts.agents = agents.register(app, parts)
    views.register(app, parts)
    app.reconnect_parts = parts
    return app
