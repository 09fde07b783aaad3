"""The worker's logic in-process, with no broker: handle_marks / handle_outcomes with a fake
publisher and a dict store, and the real Faust agent through Faust's test_context()."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import pytest

from models.state import PupilState
from schemas.deadletter import DeadLetter
from schemas.events import InterventionEvent, InterventionKind
from schemas.marks import MarkLimits
from schemas.outcomes import OutcomeEvent
from streams import handler
from streams.handler import MarkTopics, Record, handle_marks, handle_outcomes
from streams.states import BatchStates

TOPICS = MarkTopics(marks="t.marks", interventions="t.interventions", dead_letter="t.dead-letter")
NOW = dt.datetime(2026, 1, 5, 18, 0, tzinfo=dt.timezone.utc)  # after every mark of the fixtures
START = dt.date(2025, 9, 8)


class FakePublisher:
    """Records every effect in order; a send can be made to fail."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, str, bytes, bytes]] = []
        self.fail_on = fail_on

    async def send(self, topic: str, key: bytes, value: bytes):
        if topic == self.fail_on:
            raise ConnectionError("the broker is gone")
        self.calls.append(("send", topic, key, value))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def write_state(self, records) -> None:
        for partition, items in records.items():
            for key, value in items:
                self.calls.append(("state", str(partition), key, value))

    def sent(self, topic: str) -> list[tuple[bytes, bytes]]:
        return [(key, value) for kind, where, key, value in self.calls if kind == "send" and where == topic]

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(value) for _, value in self.sent(TOPICS.dead_letter)]


def wire(mark, *, partition: int = 0, offset: int = 0, key: bytes | None | str = "pupil") -> Record:
    value = mark.to_wire() if hasattr(mark, "to_wire") else mark
    if key == "pupil":
        key = mark.pupil_id.encode()
    return Record(key=key, value=value, topic=TOPICS.marks, partition=partition, offset=offset, timestamp=0.0)


def run(records, store, publisher, engine, **kwargs):
    return asyncio.run(handle_marks(records, BatchStates(store), publisher, engine=engine, topics=TOPICS,
                                    limits=MarkLimits(), now=NOW, **kwargs))


@pytest.fixture
def dipping_pupil(make_pupil_marks):
    """Thirty full days, then three weeks of unexplained absence: the engine raises a concern."""
    return make_pupil_marks("P100", START, [("/", "\\")] * 30 + [("N", "N")] * 15)


@pytest.fixture
def steady_pupils(make_pupil_marks):
    return [mark for pupil in ("P201", "P202") for mark in make_pupil_marks(pupil, START, [("/", "\\")] * 40)]


def test_a_clean_batch_is_applied_and_raises_what_the_engine_raises(engine, dipping_pupil, steady_pupils):
    marks = dipping_pupil + steady_pupils
    publisher, store = FakePublisher(), {}
    report = run([wire(m, offset=i) for i, m in enumerate(marks)], store, publisher, engine)
    expected = engine.process(marks, {}).events
    events = [InterventionEvent.model_validate_json(v) for _, v in publisher.sent(TOPICS.interventions)]
    assert events == expected and any(e.kind is InterventionKind.CONCERN for e in events)
    assert report.reconciles and sum(report.applied.values()) == len(marks) and not report.dead_lettered
    assert sorted(store) == ["P100", "P201", "P202"]
    assert PupilState.from_bytes(store["P100"]).counted_marks() == len(dipping_pupil)


def test_effects_are_delivered_before_the_state_that_records_them(engine, dipping_pupil):
    publisher = FakePublisher()
    run([wire(m, offset=i) for i, m in enumerate(dipping_pupil)] + [wire(b"not json", offset=999, key=b"x")], {}, publisher,
        engine)
    kinds = [kind for kind, *_ in publisher.calls]
    assert "send" in kinds and "state" in kinds
    assert kinds.index("state") > max(i for i, kind in enumerate(kinds) if kind == "send")


def test_changelog_holds_one_record_per_pupil_on_its_own_partition(engine, dipping_pupil, steady_pupils):
    publisher, store = FakePublisher(), {}
    records = [wire(m, partition=3 if m.pupil_id == "P100" else 1, offset=i)
               for i, m in enumerate(dipping_pupil + steady_pupils)]
    run(records, store, publisher, engine)
    state_records = [(partition, key, value) for kind, partition, key, value in publisher.calls if kind == "state"]
    assert sorted((p, k) for p, k, _ in state_records) == [("1", b"P201"), ("1", b"P202"), ("3", b"P100")]
    assert all(store[k.decode()] == v for _, k, v in state_records)


POISON = {
    "tombstone": None,
    "not_utf8": b"\xff\xfe\x00garbage",
    "deep_nesting": b"[" * 5000 + b"]" * 5000,
    "deep_object": b'{"a":' * 3000 + b"1" + b"}" * 3000,
    "overflow_recorded_at": json.dumps({
        "school_id": "SCH1", "pupil_id": "P300", "date": "2025-10-01", "session": "AM", "code": "/",
        "recorded_at": "9999-12-31T23:59:59-12:00"}).encode(),
    "huge_number": b'{"school_id":"SCH1","pupil_id":"P301","date":"2025-10-01","session":"AM","code":"/",'
                   b'"recorded_at":"2025-10-01T08:00:00Z","schema_version":' + b"9" * 5000 + b"}",
    "not_an_object": b"[1, 2, 3]",
    "empty": b"",
}


def test_poison_records_are_dead_lettered_and_take_no_good_mark_with_them(engine, dipping_pupil, steady_pupils):
    good = dipping_pupil + steady_pupils
    records, offset = [], 0
    poison = iter(POISON.items())
    for index, mark in enumerate(good):
        records.append(wire(mark, offset=offset))
        offset += 1
        if index % 15 == 0:
            name, value = next(poison, (None, None))
            if name is not None:
                records.append(Record(key=name.encode(), value=value, topic=TOPICS.marks, partition=0,
                                      offset=offset, timestamp=0.0))
                offset += 1
    publisher, store = FakePublisher(), {}
    report = run(records, store, publisher, engine)
    letters = publisher.dead_letters()
    assert sorted(letter.offset for letter in letters) == sorted(
        r.offset for r in records if r.key.decode() in POISON)
    assert all(letter.reason and letter.detail for letter in letters)
    assert sum(report.applied.values()) == len(good) and report.reconciles
    assert sum(PupilState.from_bytes(v).counted_marks() for v in store.values()) == len(good)


def test_an_unexpected_parse_error_dead_letters_that_record_only(engine, steady_pupils, monkeypatch, caplog):
    real = handler.parse_mark_json

    def flaky(payload, **kwargs):
        if b'"P202"' in (payload or b"") and b'"2025-09-10"' in payload:
            raise ZeroDivisionError("P202 something")
        return real(payload, **kwargs)

    monkeypatch.setattr(handler, "parse_mark_json", flaky)
    publisher, store = FakePublisher(), {}
    with caplog.at_level(logging.ERROR):
        report = run([wire(m, offset=i) for i, m in enumerate(steady_pupils)], store, publisher, engine)
    letters = publisher.dead_letters()
    assert len(letters) == 2 and {letter.reason for letter in letters} == {"internal_error"}
    assert "ZeroDivisionError" in letters[0].detail
    assert sum(report.applied.values()) == len(steady_pupils) - 2 and report.reconciles
    assert "P202" not in caplog.text and "ZeroDivisionError" in caplog.text  # where and what, never whose


class _FailsFor:
    """The real engine, except that any batch holding one pupil's given session fails."""

    def __init__(self, engine, pupil: str, day: dt.date) -> None:
        self.engine, self.pupil, self.day = engine, pupil, day

    def process(self, marks, states):
        if any(m.pupil_id == self.pupil and m.date == self.day for m in marks):
            raise FloatingPointError("a defect")
        return self.engine.process(marks, states)


def test_a_processing_defect_costs_one_mark_and_leaves_no_half_updated_state(engine, dipping_pupil, steady_pupils,
                                                                               caplog):
    marks = steady_pupils + dipping_pupil
    broken_day = dipping_pupil[40].date
    publisher, store = FakePublisher(), {}
    with caplog.at_level(logging.ERROR):
        report = run([wire(m, offset=i) for i, m in enumerate(marks)], store, publisher,
                     _FailsFor(engine, "P100", broken_day))
    letters = publisher.dead_letters()
    assert [letter.reason for letter in letters] == ["internal_error"] * 2  # that day's AM and PM
    assert sum(report.applied.values()) == len(marks) - 2 and report.reconciles
    clean = {}
    survivors = [m for m in marks if not (m.pupil_id == "P100" and m.date == broken_day)]
    direct = engine.process(survivors, clean)
    assert {pupil: PupilState.from_bytes(v) for pupil, v in store.items()} == clean
    assert [InterventionEvent.model_validate_json(v) for _, v in publisher.sent(TOPICS.interventions)] == direct.events
    assert "P100" not in caplog.text


def test_a_failed_delivery_leaves_the_table_untouched_so_the_batch_can_be_read_again(engine, dipping_pupil):
    store = {}
    with pytest.raises(ConnectionError):
        run([wire(m, offset=i) for i, m in enumerate(dipping_pupil)], store, FakePublisher(fail_on=TOPICS.interventions),
            engine)
    assert store == {}
    publisher = FakePublisher()
    report = run([wire(m, offset=i) for i, m in enumerate(dipping_pupil)], store, publisher, engine)
    assert publisher.sent(TOPICS.interventions) and report.applied["new"] == len(dipping_pupil)


def test_a_mark_keyed_by_anything_but_its_pupil_is_rekeyed_not_applied(engine, dipping_pupil):
    mark = dipping_pupil[0]
    publisher, store = FakePublisher(), {}
    report = run([wire(mark, key=None), wire(mark, key=b"SCH1", offset=1)], store, publisher, engine)
    assert report.rekeyed == 2 and report.reconciles and store == {}
    assert publisher.sent(TOPICS.marks) == [(b"P100", mark.to_wire())] * 2


def _outcome(pupil: str, action: str) -> bytes:
    return OutcomeEvent.from_request({"pupil_id": pupil, "school_id": "SCH1", "action": action,
                                      "recorded_at": "2025-10-02T10:00:00Z",
                                      "recorded_by_role": "head_of_year"}).to_wire()


def test_outcomes_open_and_close_plans_and_bad_ones_are_dead_lettered(engine, dipping_pupil):
    store = {}
    run([wire(m, offset=i) for i, m in enumerate(dipping_pupil)], store, FakePublisher(), engine)
    records = [
        Record(b"P100", _outcome("P100", "support_plan_started"), "t.outcomes", 0, 0, 0.0),
        Record(b"P999", _outcome("P999", "acknowledged"), "t.outcomes", 0, 1, 0.0),
        Record(b"P100", b'{"pupil_id": "P100", "action": "fine_issued"}', "t.outcomes", 0, 2, 0.0),
        Record(b"P100", b"[" * 4000, "t.outcomes", 0, 3, 0.0),
        Record(b"SCH1", _outcome("P100", "acknowledged"), "t.outcomes", 0, 4, 0.0),
    ]
    publisher = FakePublisher()
    report = asyncio.run(handle_outcomes(records, BatchStates(store), publisher, outcomes_topic="t.outcomes",
                                         dead_letter_topic=TOPICS.dead_letter))
    assert report.results == {("support_plan_started", "applied"): 1, ("acknowledged", "unknown_pupil"): 1,
                              ("invalid", "dead_lettered"): 2, ("acknowledged", "rekeyed"): 1}
    assert PupilState.from_bytes(store["P100"]).policy.plan_open
    assert publisher.sent("t.outcomes") == [(b"P100", records[4].value)]
    assert [letter.offset for letter in publisher.dead_letters()] == [2, 3]


def test_the_faust_agent_drives_the_handler_in_process(engine, dipping_pupil, model_path, tmp_path, monkeypatch):
    """The real agent (streams.agents) through Faust's test_context(), its publisher faked."""
    from streams import agents
    from streams.app import create_app
    from streams.settings import Settings

    publisher = FakePublisher()
    monkeypatch.setattr(agents.FaustPublisher, "send", lambda self, topic, key, value: publisher.send(topic, key, value))
    monkeypatch.setattr(agents.FaustPublisher, "write_state", lambda self, records: publisher.write_state(records))
    settings = Settings(model_path=model_path, data_dir=tmp_path, app_id="inproc", topic_marks="inproc.marks",
                        topic_dead_letter=TOPICS.dead_letter, topic_interventions=TOPICS.interventions,
                        batch_within_s=0.01)

    async def scenario() -> None:
        app = create_app(settings)
        app.loop = asyncio.get_running_loop()
        app.finalize()
        app.flow_control.resume()
        parts = app.reconnect_parts
        assert parts.runtime.load()
        async with parts.agents["marks"].test_context() as agent:
            for mark in dipping_pupil:
                await agent.put(mark.to_wire(), key=b"P100", wait=False)
            await agent.put(b"\xff not a mark", key=b"x", wait=False)
            for _ in range(500):
                if len(publisher.dead_letters()) == 1 and "P100" in parts.table.data and PupilState.from_bytes(
                        parts.table.data["P100"]).counted_marks() == len(dipping_pupil):
                    break
                await asyncio.sleep(0.01)
        assert PupilState.from_bytes(parts.table.data["P100"]).counted_marks() == len(dipping_pupil)
        assert publisher.dead_letters()[0].reason == "invalid_encoding"
        assert publisher.sent(TOPICS.interventions)

    asyncio.run(scenario())
