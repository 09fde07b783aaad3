"""Offline replay: the engine over a CSV, with no broker."""

from __future__ import annotations

import io
import json

import pytest

from models.artifact import load_model
from models.engine import DecisionEngine
from models.replay import replay_file
from schemas.events import InterventionEvent, InterventionKind


@pytest.fixture(scope="module")
def engine(model_path):
    return DecisionEngine(load_model(model_path), window_days=126)


@pytest.fixture
def csv_path(crafted_csv, bad_rows):
    return crafted_csv(extra_rows=bad_rows)


@pytest.mark.slow
def test_batch_boundaries_do_not_change_decisions(engine, csv_path):
    """The stream's micro-batches fall anywhere; the interventions must not depend on where."""
    results = []
    for batch_size in (2, 7, 250, 100_000):
        engine_copy = DecisionEngine(engine.model, window_days=126)
        _, events = replay_file(csv_path, engine_copy, batch_size=batch_size)
        results.append([e.model_dump() for e in events])
    assert results[0] and all(r == results[0] for r in results)


def test_replay_writes_events_and_dead_letters(engine, csv_path, bad_rows):
    out, letters = io.StringIO(), io.StringIO()
    report, events = replay_file(csv_path, engine, out=out, dead_letters=letters)
    lines = out.getvalue().splitlines()
    assert len(lines) == report.events == len(events) > 0
    assert [InterventionEvent.model_validate_json(line) for line in lines] == events
    rejected = [json.loads(line) for line in letters.getvalue().splitlines()]
    assert len(rejected) == report.dead_lettered == len(bad_rows)
    assert all(letter["stage"] == "replay" and letter["line"] > 1 for letter in rejected)
    assert report.read == report.applied + report.dead_lettered


def test_every_concern_is_explained_with_the_pupils_numbers(engine, csv_path):
    _, events = replay_file(csv_path, engine)
    concerns = [e for e in events if e.kind is InterventionKind.CONCERN]
    assert concerns
    for event in concerns:
        assert event.reasons and all(any(ch.isdigit() for ch in reason.text) for reason in event.reasons)
        assert event.suggested_actions[0].value == "check_in_conversation"
        assert event.window.possible_ytd >= engine.policy.min_possible_sessions
