"""Create the topics of ops/topics.toml, idempotently, with kafka-python's admin client."""

from __future__ import annotations

import tomllib
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

# ops/ is configuration: the topic definitions are data read from it, not code imported.
TOPICS_FILE = Path(str(resources.files("ops").joinpath("topics.toml")))


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    purpose: str
    config: dict[str, str] = field(default_factory=dict)


class TopicMismatchError(RuntimeError):
    pass


def topic_specs(settings: Settings, path: Path = TOPICS_FILE) -> list[TopicSpec]:
    with path.open("rb") as handle:
        table = tomllib.load(handle)["topics"]
    specs = []
    for key, entry in table.items():
        if "setting" in entry:
            name = getattr(settings, entry["setting"])
        elif "name" in entry:
            name = entry["name"].format(app_id=settings.app_id)
        else:
            raise ValueError(f"topic {key!r} in {path} needs 'setting' or 'name'")
        config = {k: str(v) for k, v in entry.get("config", {}).items()}
        if "retention_days_setting" in entry:
            config["retention.ms"] = str(int(getattr(settings, entry["retention_days_setting"])) * 86_400_000)
        specs.append(TopicSpec(name=name, partitions=settings.topic_partitions,
                               replication_factor=settings.topic_replication, purpose=entry.get("purpose", ""),
                               config=config))
    return specs


def admin_client(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=settings.bootstrap_list, client_id=f"{settings.app_id}-admin",
                            request_timeout_ms=int(settings.broker_connect_retry_s * 1000))


def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None, admin=None) -> dict[str, str]:
    """Create what is missing; check what exists and give it the configuration ops/topics.toml
    states (a changed RECONNECT_DEAD_LETTER_RETENTION_DAYS reaches a topic made before). Returns
    topic -> 'created' | 'exists'."""
    specs = specs if specs is not None else topic_specs(settings)
    admin = admin or admin_client(settings)
    try:
        existing = set(admin.list_topics())
        report: dict[str, str] = {}
        missing = [spec for spec in specs if spec.name not in existing]
        for spec in missing:
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, spec.replication_factor,
                                              topic_configs=spec.config)])
                report[spec.name] = "created"
            except TopicAlreadyExistsError:  # created by someone else meanwhile
                report[spec.name] = "exists"
        present = [spec for spec in specs if spec.name not in report]
        if present:
            described = {d["name"]: d for d in admin.describe_topics([s.name for s in present])}
            for spec in present:
                found = len(described.get(spec.name, {}).get("partitions", []))
                if found != spec.partitions:
                    raise TopicMismatchError(
                        f"topic {spec.name} has {found} partitions but {spec.partitions} are configured; "
                        "partition counts cannot change under a running deployment"
                    )
                report[spec.name] = "exists"
            # The whole stated set each time: a non-incremental alter replaces a topic's dynamic
            # configuration, and these topics carry no configuration but what ops/topics.toml states.
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=spec.config)
                                 for spec in present if spec.config])
        return report
    finally:
        admin.close()
