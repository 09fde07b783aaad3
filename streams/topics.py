"""The topics the worker reads and writes. Payloads are bytes: the worker validates marks itself,
so a malformed message becomes a dead letter instead of a crashed stream."""

from __future__ import annotations

from streams.app import app, settings

marks_topic = app.topic(
    settings.topic_marks, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    partitions=settings.topic_partitions,
)
interventions_topic = app.topic(
    settings.topic_interventions, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    partitions=settings.topic_partitions,
)
dead_letter_topic = app.topic(
    settings.topic_dead_letter, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    partitions=settings.topic_partitions,
)
outcomes_topic = app.topic(
    settings.topic_outcomes, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    partitions=settings.topic_partitions,
)
