"""The walking skeleton end to end on the embedded broker: CSV -> ingest -> Kafka -> Faust worker
-> interventions, checked against offline replay and reconciled mark by mark."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from devtools.harness import (
    WorkerProcess,
    consume_all,
    create_topics,
    isolated_env,
    metric_sum,
    produce_raw,
    reconnect_command,
    run_command,
)
from devtools.promtool import promtool_check_metrics
from models.artifact import load_model
from models.engine import DecisionEngine
from models.replay import replay_file
from schemas.events import InterventionEvent
from schemas.interchange import read_marks

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ENFORCEMENT = re.compile(r"\b(fines?|fined|penalt\w*|prosecut\w*|enforce\w*|magistrate\w*|court)\b", re.IGNORECASE)


@pytest.fixture
def marks_csv(crafted_csv) -> Path:
    return crafted_csv(bad_rows_at=1000)


def test_marks_in_interventions_out_and_everything_reconciles(broker, model_path, marks_csv, tmp_path, bad_rows,
                                                              promtool, wait_until):
    tag = f"e2e{uuid.uuid4().hex[:8]}"
    env = isolated_env(broker.bootstrap, tag)
    settings = create_topics(env)
    worker = WorkerProcess(env, tmp_path).start()
    try:
        worker.wait_ready()
        ingest = run_command(reconnect_command("ingest", str(marks_csv)), env=env)
        assert ingest.returncode == 3, ingest.stderr  # 3: the file was read, some rows were rejected
        counts = re.search(r"read (\d+), published (\d+), rejected (\d+)", ingest.stdout)
        read, published, rejected = map(int, counts.groups())
        assert rejected == len(bad_rows) and read == published + rejected

        valid_mark = json.dumps({"school_id": "SCHA", "pupil_id": "SCHA-R001", "date": "2025-09-08",
                                 "session": "AM", "code": "/", "recorded_at": "2025-09-08T08:50:00Z"}).encode()
        poison = [
            (b"k", b"\x00\xff\xfe binary garbage \x81"),
            (b"k", b'{"school_id": "SCHA", "pupil_id": '),
            (b"SCHA-P001", json.dumps({"school_id": "SCHA", "pupil_id": "SCHA-P001", "date": "2025-09-08",
                                       "session": "AM", "code": "Q7", "recorded_at": "2025-09-08T09:00:00Z"}).encode()),
            (b"SCHA-P001", json.dumps({"schema_version": 2, "school_id": "SCHA", "pupil_id": "SCHA-P001",
                                       "date": "2025-09-08", "session": "AM", "code": "/",
                                       "recorded_at": "2025-09-08T09:00:00Z"}).encode()),
            (b"k", b"{" + b" " * (5 * 1024 * 1024) + b"}"),  # 5 MB
            (None, valid_mark),  # no key: re-published keyed by pupil, then counted once
        ]
        produce_raw(broker.bootstrap, settings.topic_marks, poison)
        expected_consumed = published + len(poison) + 1  # the re-keyed copy is read again

        # Nothing lost: every mark read is applied to state or dead-lettered (or re-keyed once).
        def settled(values):
            handled = (metric_sum(values, "reconnect_marks_applied_total")
                       + metric_sum(values, "reconnect_marks_dead_lettered_total")
                       + metric_sum(values, "reconnect_marks_rekeyed_total"))
            return metric_sum(values, "reconnect_marks_consumed_total") >= expected_consumed and handled == expected_consumed

        worker.wait_consumed(expected_consumed, timeout=240)
        values = wait_until(lambda: (lambda v: v if settled(v) else None)(worker.metrics()), timeout=240,
                            what="every consumed mark to be handled")
        assert settled(values), values
        assert metric_sum(values, "reconnect_marks_dead_lettered_total") == 5
        assert metric_sum(values, "reconnect_marks_rekeyed_total") == 1
        assert metric_sum(values, "reconnect_worker_gc_frozen_objects") > 10_000  # settled once the model loaded
        applied = metric_sum(values, "reconnect_marks_applied_total")
        assert applied == published + 1

        # Idempotent state: each distinct (pupil, date, session) counted exactly once.
        valid_keys = {row.mark.key for row in read_marks(marks_csv) if row.mark is not None}
        state = worker.state()
        assert state["sessions_held"] == len(valid_keys) + 1  # + the re-keyed mark
        assert state["pupils"] == 61
        repeats = (metric_sum(values, 'reconnect_marks_applied_total{outcome="duplicate"}')
                   + metric_sum(values, 'reconnect_marks_applied_total{outcome="superseded"}'))
        assert repeats >= 300  # the re-exported rows at least: recognised, not counted again
        assert metric_sum(values, "reconnect_marks_applied_total{outcome=\"amended\"}") > 0

        # The same interventions as offline replay, to the last field.
        stream_events = [InterventionEvent.model_validate_json(r.value)
                         for r in consume_all(broker.bootstrap, settings.topic_interventions, idle_s=3)]
        engine = DecisionEngine(load_model(model_path), window_days=settings.state_window_days)
        report, replay_events = replay_file(marks_csv, engine)
        assert report.dead_lettered == len(bad_rows)
        stream_outcomes = {o: metric_sum(values, f'reconnect_marks_applied_total{{outcome="{o}"}}')
                           for o in ("new", "amended", "duplicate", "superseded")}
        stream_outcomes["new"] -= 1  # the re-keyed mark, which replay never saw
        assert stream_outcomes == {o: report.outcomes.get(o, 0) for o in stream_outcomes}
        assert replay_events, "the crafted dips must raise concerns"
        by_id = lambda events: {e.event_id: e.model_dump() for e in events}  # noqa: E731
        assert by_id(stream_events) == by_id(replay_events)
        assert len(stream_events) == len(by_id(stream_events)), "no event published twice"
        concerned = {e.pupil_id for e in stream_events if e.kind == "concern"}
        assert {"SCHA-P000", "SCHA-P002", "SCHB-P003"} <= concerned
        assert "SCHA-P005" not in concerned and "SCHB-P005" not in concerned, "one week of illness is not a dip"
        assert metric_sum(values, "reconnect_interventions_published_total") >= len(stream_events) > 0

        # Dead letters carry the raw input and a precise reason.
        letters = [json.loads(r.value) for r in consume_all(broker.bootstrap, settings.topic_dead_letter, idle_s=3)]
        reasons = sorted(letter["reason"] for letter in letters)
        assert reasons == sorted(["malformed_id", "invalid_date", "unknown_session", "unknown_code", "empty_id",
                                  "future_date", "invalid_encoding", "invalid_json", "unknown_code",
                                  "unsupported_schema_version", "payload_too_large"])
        ingest_letters = [l for l in letters if l["stage"] == "ingest"]
        assert all(l["line"] and l["raw"] and l["source_file"] for l in ingest_letters)
        assert all(l["offset"] is not None for l in letters if l["stage"] == "worker")

        # The live scrape passes Prometheus' own lint, and carries no pupil id in any label.
        scrape = worker.get("/metrics")[1]
        rc, lint = promtool_check_metrics(scrape)
        assert rc == 0, lint
        labelled = [line for line in scrape.splitlines() if line.startswith("reconnect_") and "{" in line]
        assert labelled and not any(re.search(r"SCH[AB]-P\d", line) for line in labelled)

        # Support, never punishment: nothing anywhere names enforcement.
        texts = [r.value.decode() for r in consume_all(broker.bootstrap, settings.topic_interventions, idle_s=1)]
        texts += [worker.get("/metrics")[1], ingest.stdout, worker.log_tail(500)]
        for text in texts:
            assert not ENFORCEMENT.search(text), ENFORCEMENT.search(text)
    finally:
        worker.stop()
