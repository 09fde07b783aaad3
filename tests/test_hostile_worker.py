"""Nothing lost, attacked: a running worker on the embedded broker gets valid marks interleaved with
poison of every kind seen in issue 10 plus a hypothesis-generated corpus. Every valid mark must
be applied, every poison record dead-lettered with the reason it deserves, the worker must stay
ready, and the metrics must reconcile exactly."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from devtools.harness import (
    WorkerProcess,
    consume_all,
    create_topics,
    isolated_env,
    metric_sum,
)
from devtools.poison import POISON_PUPIL, poison_message_cases, poison_messages
from schemas.deadletter import DeadLetter

pytestmark = [pytest.mark.broker, pytest.mark.slow]
GOOD_PUPILS = 40
GOOD_DAYS = 5


def good_marks(today: dt.date) -> list[tuple[bytes, bytes]]:
    """Full attendance for 40 pupils over the five school days before today."""
    days, day = [], today - dt.timedelta(days=3)
    while len(days) < GOOD_DAYS:
        if day.weekday() < 5:
            days.append(day)
        day -= dt.timedelta(days=1)
    marks = []
    for day in sorted(days):
        for n in range(GOOD_PUPILS):
            pupil = f"SCH900-P{n:05d}"
            for session, code in (("AM", "/"), ("PM", "\\")):
                value = json.dumps({"school_id": "SCH900", "pupil_id": pupil, "date": day.isoformat(),
                                    "session": session, "code": code,
                                    "recorded_at": f"{day.isoformat()}T{'08:50' if session == 'AM' else '13:20'}:00Z"})
                marks.append((pupil.encode(), value.encode()))
    return marks


@pytest.fixture(scope="module")
def hostile_worker(broker, model_path, tmp_path_factory):
    env = isolated_env(broker.bootstrap, f"hostile{uuid.uuid4().hex[:6]}")
    topics = create_topics(env)
    worker = WorkerProcess(env, tmp_path_factory.mktemp("hostile")).start()
    try:
        worker.wait_ready()
        yield worker, topics
    finally:
        worker.stop()


@settings(max_examples=1, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
@given(corpus=st.lists(poison_message_cases(), min_size=60, max_size=60))
def test_valid_marks_survive_poison_of_every_kind(hostile_worker, broker, wait_until, corpus):
    worker, topics = hostile_worker
    today = dt.date.today()
    good = good_marks(today)
    poison = poison_messages(today) + corpus
    # Interleave: a poison record after every few good marks, so each shares batches with good ones.
    stride = max(len(good) // len(poison), 1)
    sequence: list[tuple[str, bytes | None, bytes | None, object]] = []
    for index, (key, value) in enumerate(good):
        sequence.append(("good", key, value, None))
        if index % stride == 0 and index // stride < len(poison):
            record = poison[index // stride]
            sequence.append(("poison", record.key, record.value, record))
    sequence += [("poison", p.key, p.value, p) for p in poison[len(good) // stride + 1:]]

    before = worker.metrics()
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], max_request_size=8 * 1024 * 1024, acks="all")
    expected_reason: dict[tuple[int, int], str] = {}
    try:
        for kind, key, value, record in sequence:
            where = producer.send(topics.topic_marks, key=key, value=value).get(timeout=30)
            if kind == "poison":
                expected_reason[(where.partition, where.offset)] = record.reason.value
    finally:
        producer.close()

    def delta(name: str) -> float:
        return metric_sum(worker.metrics(), name) - metric_sum(before, name)

    wait_until(lambda: delta("reconnect_marks_consumed_total") >= len(sequence), timeout=240,
               what="the worker to read every record")
    assert worker.get("/readyz")[0] == 200, worker.log_tail()

    # Every record accounted for, exactly.
    values = worker.metrics()
    consumed, applied = delta("reconnect_marks_consumed_total"), delta("reconnect_marks_applied_total")
    dead, rekeyed = delta("reconnect_marks_dead_lettered_total"), delta("reconnect_marks_rekeyed_total")
    assert consumed == len(sequence) and rekeyed == 0
    assert applied == len(good) and dead == len(poison)
    assert metric_sum(values, "reconnect_marks_consumed_total") == (
        metric_sum(values, "reconnect_marks_applied_total") + metric_sum(values, "reconnect_marks_dead_lettered_total")
        + metric_sum(values, "reconnect_marks_rekeyed_total"))

    # Every valid mark is in state; every poison record is a dead letter with the reason it deserves.
    assert worker.state()["sessions_held"] >= len(good)
    letters = [DeadLetter.model_validate_json(r.value)
               for r in consume_all(broker.bootstrap, topics.topic_dead_letter, idle_s=3)]
    got = {(letter.partition, letter.offset): letter.reason for letter in letters
           if (letter.partition, letter.offset) in expected_reason}
    assert got == expected_reason
    assert all(letter.reason != "internal_error" for letter in letters)

    # Nothing in the worker's log names a pupil, however odd the input.
    assert POISON_PUPIL not in worker.log_tail(5000)
