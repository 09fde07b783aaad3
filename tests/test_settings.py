"""One settings object per process, defaults typed once, and the caseload reading the worker's
shared settings under the same names so both accept the same marks from the same topics."""

from __future__ import annotations

import pytest

from caseload.settings import CaseloadSettings
from streams.settings import BrokerProfile, Settings, load_settings

SHARED = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-a:9092,kafka-b:9092",
    "RECONNECT_TOPIC_MARKS": "trust.marks.v1",
    "RECONNECT_TOPIC_INTERVENTIONS": "trust.interventions.v1",
    "RECONNECT_TOPIC_OUTCOMES": "trust.outcomes.v1",
    "RECONNECT_SESSION_TIMEOUT_S": "10",
    "RECONNECT_MAX_FUTURE_DAYS": "45",
    "RECONNECT_MAX_JSON_DEPTH": "12",
    "RECONNECT_RECORDED_AT_MAX_SKEW_S": "60",
    "RECONNECT_RECORDED_AT_FLOOR": "2015-08-01",
    "RECONNECT_PUPIL_ID_PATTERN": "SCH[0-9]{3}-P[0-9]{5}",
}


def test_the_caseload_and_the_worker_agree_by_default():
    worker, caseload = Settings(_env_file=None), CaseloadSettings(_env_file=None)
    assert worker.mark_limits() == caseload.mark_limits()
    for name in ("kafka_bootstrap_servers", "topic_marks", "topic_interventions", "topic_outcomes",
                 "session_timeout_s", "heartbeat_interval_s", "consumer_fetch_max_wait_ms"):
        assert getattr(worker, name) == getattr(caseload, name), name


def test_the_caseload_follows_the_worker_s_environment(monkeypatch):
    for name, value in SHARED.items():
        monkeypatch.setenv(name, value)
    worker, caseload = Settings(_env_file=None), CaseloadSettings(_env_file=None)
    assert worker.mark_limits() == caseload.mark_limits()
    assert worker.mark_limits().max_future_days == 45
    assert (worker.topic_marks, worker.kafka_bootstrap_servers) == (caseload.topic_marks,
                                                                     caseload.kafka_bootstrap_servers)


def test_command_line_overrides_win_and_none_means_not_given(monkeypatch):
    monkeypatch.setenv("RECONNECT_WEB_PORT", "7000")
    assert load_settings(web_port=None).web_port == 7000
    assert load_settings(web_port=7100).web_port == 7100


def test_a_profile_fills_only_what_was_not_set():
    assert Settings(_env_file=None).consumer_fetch_max_wait_ms == 500
    assert Settings(_env_file=None, broker_profile=BrokerProfile.EMBEDDED).consumer_fetch_max_wait_ms == 100
    assert Settings(_env_file=None, broker_profile="embedded", consumer_fetch_max_wait_ms=250).consumer_fetch_max_wait_ms == 250


def test_the_api_token_comes_from_its_file_first(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    assert Settings(_env_file=None, api_token="inline", api_token_file=token_file).api_token_value() == "from-the-file"
    assert Settings(_env_file=None, api_token="inline").api_token_value() == "inline"
    assert Settings(_env_file=None).api_token_value() is None
    assert Settings(_env_file=None, api_token="   ").api_token_value() is None


@pytest.mark.parametrize("name", ["", "a b", "x" * 250, "..", "marks/v1"])
def test_topic_names_are_checked(name):
    with pytest.raises(ValueError):
        Settings(_env_file=None, topic_marks=name)


class _FakeAdmin:
    """What the topic admin asks of Kafka, recorded."""

    def __init__(self, existing: set[str], partitions: int) -> None:
        self.existing, self.partitions = existing, partitions
        self.created: list = []
        self.altered: list = []

    def list_topics(self):
        return list(self.existing)

    def create_topics(self, topics):
        self.created += topics

    def describe_topics(self, names):
        return [{"name": name, "partitions": [{}] * self.partitions} for name in names]

    def alter_configs(self, resources):
        self.altered += resources

    def close(self):
        pass


def test_topics_made_before_get_the_stated_dead_letter_retention():
    from streams.topic_admin import ensure_topics, topic_specs

    settings = Settings(_env_file=None, dead_letter_retention_days=30)
    names = {spec.name for spec in topic_specs(settings)}
    admin = _FakeAdmin(existing=names, partitions=settings.topic_partitions)
    assert set(ensure_topics(settings, admin=admin).values()) == {"exists"} and not admin.created
    altered = {resource.name: resource.configs for resource in admin.altered}
    assert altered[settings.topic_dead_letter] == {"cleanup.policy": "delete", "retention.ms": str(30 * 86_400_000)}
    assert altered[f"{settings.app_id}-pupil-state-changelog"]["cleanup.policy"] == "compact"
