"""The topics of the contract: their default names, typed once.

The settings (RECONNECT_TOPIC_*), the AsyncAPI document, the webhook bridge and the caseload
all take their defaults from here; a deployment may rename them through the settings.
"""

from __future__ import annotations

MARKS = "reconnect.marks.v1"
INTERVENTIONS = "reconnect.interventions.v1"
DEAD_LETTER = "reconnect.dead-letter.v1"
OUTCOMES = "reconnect.outcomes.v1"
WEBHOOK_DEAD_LETTER = "reconnect.webhook-dead-letter.v1"

# Kafka's own rules for a topic name (the embedded broker accepts an empty one, so we check).
TOPIC_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_topic_name(value: str) -> str:
    if not value or len(value) > 249 or set(value) - TOPIC_NAME_CHARS or value in {".", ".."}:
        raise ValueError(f"invalid Kafka topic name {value!r}")
    return value
