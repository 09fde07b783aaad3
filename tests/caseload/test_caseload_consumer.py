"""The caseload's consumer and outcome publisher: records to rows, and the real thing on the broker."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections import namedtuple

import pytest
from sqlalchemy import func, select

from caseload.consumer import CaseloadConsumer, RecordHandler
from caseload.store import pupil_years
from caseload.tables import CaseEvent, PupilCase
from schemas.marks import Session

Record = namedtuple("Record", "topic partition offset key value")


@pytest.fixture
def records(settings):
    def build(*values: tuple[str, bytes | None]) -> list[Record]:
        topics = {"event": settings.topic_interventions, "mark": settings.topic_marks, "other": "t.elsewhere"}
        return [Record(topics[kind], 0, offset, b"k", value) for offset, (kind, value) in enumerate(values)]

    return build


def test_events_and_marks_are_applied_and_unreadable_records_skipped_without_a_pupil_id(
        settings, db, clock, make_event, make_mark, records, caplog):
    handler = RecordHandler(settings, db, clock=clock)
    event = make_event(pupil="SCH1-P777")
    mark = make_mark("SCH1-P777", dt.date(2026, 9, 8), "AM", "N")
    batch = records(
        ("event", event.model_dump_json().encode()),
        ("event", b'{"pupil_id": "SCH1-P666", "kind": "fine_issued"}'),  # not the contract
        ("event", b"\xff\xfe not json"),
        ("event", None),  # a tombstone
        ("mark", mark.to_wire()),
        ("mark", json.dumps({**json.loads(mark.to_wire()), "code": "ZZ", "pupil_id": "SCH1-P555"}).encode()),
        ("other", b"{}"),
        ("event", event.model_dump_json().encode()),  # redelivered in the same batch
    )
    with caplog.at_level(logging.WARNING, logger="caseload.consumer"):
        counts = handler.handle(batch)
    assert counts == {"interventions_opened": 1, "interventions_duplicate": 1, "unreadable": 5, "marks_new": 1}
    warnings = [r.getMessage() for r in caplog.records if r.name == "caseload.consumer"]
    assert len(warnings) == 5 and all("SCH1-P" not in line for line in warnings)
    assert any("unknown_code" in line for line in warnings) and any("t.interventions[0]@1" in line for line in warnings)
    handler.handle(batch)  # the whole batch redelivered after a crash: nothing doubles
    with db() as session:
        assert session.scalar(select(func.count()).select_from(PupilCase)) == 1
        assert session.scalar(select(func.count()).select_from(CaseEvent)) == 1
        assert pupil_years(session, "SCH1-P777")[2026].code_at(dt.date(2026, 9, 8), Session.AM) == "N"
    assert handler.snapshot()["unreadable"] == 10


def test_an_event_with_an_id_too_long_to_store_is_skipped_not_retried_forever(settings, db, clock, make_event,
                                                                             records):
    handler = RecordHandler(settings, db, clock=clock)
    too_long = make_event(pupil="P" + "1" * 80)
    counts = handler.handle(records(("event", too_long.model_dump_json().encode()),
                                    ("event", make_event().model_dump_json().encode())))
    assert counts == {"unreadable": 1, "interventions_opened": 1}


def test_a_record_that_breaks_its_batch_is_skipped_and_the_rest_applied(settings, db, clock, make_event, records,
                                                                       monkeypatch):
    import caseload.consumer as consumer_module

    real = consumer_module.apply_event

    def flaky(session, event, payload, now):
        if event.pupil_id == "SCH1-P002":
            raise ValueError("a defect met while storing this record")
        return real(session, event, payload, now)

    monkeypatch.setattr(consumer_module, "apply_event", flaky)
    handler = RecordHandler(settings, db, clock=clock)
    counts = handler.handle(records(*(("event", make_event(pupil=f"SCH1-P00{i}").model_dump_json().encode())
                                      for i in (1, 2, 3))))
    assert counts == {"interventions_opened": 2, "failed": 1}


# -- on the embedded broker -------------------------------------------------------------------------

@pytest.mark.broker
@pytest.mark.slow
def test_consumer_and_publisher_on_the_broker(broker, tmp_path, wait_until, make_event, make_mark, clock):
    from caseload.db import make_engine, session_factory, upgrade
    from caseload.publisher import OutcomePublisher
    from caseload.settings import CaseloadSettings
    from caseload.store import record_outcome
    from devtools.harness import consume_all, create_topics, isolated_env, produce_raw
    from schemas.outcomes import OutcomeAction, OutcomeEvent, StaffRole

    tag = f"cl{uuid.uuid4().hex[:6]}"
    env = isolated_env(broker.bootstrap, tag)
    create_topics(env)
    settings = CaseloadSettings(
        _env_file=None, kafka_bootstrap_servers=broker.bootstrap, broker_profile="embedded",
        consumer_group=f"{tag}-caseload", topic_marks=env["RECONNECT_TOPIC_MARKS"],
        topic_interventions=env["RECONNECT_TOPIC_INTERVENTIONS"], topic_outcomes=env["RECONNECT_TOPIC_OUTCOMES"])
    engine = make_engine(f"sqlite:///{tmp_path / 'caseload.db'}")
    upgrade(engine)
    db = session_factory(engine)
    event = make_event(pupil="SCH1-P042")
    produce_raw(broker.bootstrap, settings.topic_interventions, [
        (b"SCH1-P042", event.model_dump_json().encode()), (b"x", b"not json"),
        (b"SCH1-P042", event.model_dump_json().encode())])
    produce_raw(broker.bootstrap, settings.topic_marks, [
        (b"SCH1-P042", make_mark("SCH1-P042", dt.date(2026, 9, 8), session, code).to_wire())
        for session, code in (("AM", "/"), ("PM", "N"))])

    def run_consumer() -> RecordHandler:
        handler = RecordHandler(settings, db)
        consumer = CaseloadConsumer(settings, handler)
        consumer.start()
        try:
            wait_until(lambda: consumer.state == "running", timeout=60, what="the consumer to join")
            wait_until(lambda: sum(handler.snapshot().values()) >= 5 or None, timeout=60, what="five records")
        finally:
            consumer.stop()
        return handler

    first = run_consumer()
    assert first.snapshot() == {"interventions_opened": 1, "interventions_duplicate": 1, "unreadable": 1,
                                "marks_new": 2}
    with db() as session:
        assert session.scalar(select(func.count()).select_from(PupilCase)) == 1
        assert pupil_years(session, "SCH1-P042")[2026].code_at(dt.date(2026, 9, 8), Session.PM) == "N"
    # Offsets were committed after the transaction: a restarted consumer reads only what is new.
    produce_raw(broker.bootstrap, settings.topic_marks, [
        (b"SCH1-P042", make_mark("SCH1-P042", dt.date(2026, 9, 9), "AM", "/").to_wire())])
    handler = RecordHandler(settings, db)
    consumer = CaseloadConsumer(settings, handler)
    consumer.start()
    try:
        wait_until(lambda: handler.snapshot().get("marks_new") == 1, timeout=60, what="the new mark")
    finally:
        consumer.stop()
    assert handler.snapshot() == {"marks_new": 1}

    with db.begin() as session:
        (case,) = session.scalars(select(PupilCase)).all()
        row = record_outcome(session, case, action=OutcomeAction.SUPPORT_PLAN_STARTED, role=StaffRole.HEAD_OF_YEAR,
                             note=None, outcome_id="9e8d7c6b-0000-4000-8000-000000000001", staff_id=None, now=clock())
    publisher = OutcomePublisher(settings, db)
    try:
        assert publisher.publish_pending([row.id]) == 1
        assert publisher.publish_pending() == 0  # nothing left in the outbox
    finally:
        publisher.sender.close()
    (published,) = consume_all(broker.bootstrap, settings.topic_outcomes, expected=1)
    outcome = OutcomeEvent.model_validate_json(published.value)
    assert published.key == b"SCH1-P042" and outcome.action is OutcomeAction.SUPPORT_PLAN_STARTED
    engine.dispose()
