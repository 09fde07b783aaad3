"""The topics the worker reads and writes. Payloads are bytes: the worker validates marks itself,
so a malformed message becomes a dead letter instead of a crashed stream."""

from __future__ import annotations

from streams.app import app, settings


def _bytes_topic(name: str):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=settings.topic_partitions)

marks_topic = _bytes_topic(settings.topic_marks)
interventions_topic = _bytes_topic(settings.topic_interventions)
dead_letter_topic = _bytes_topic(settings.topic_dead_letter)
outcomes_topic = _bytes_topic(settings.topic_outcomes)
