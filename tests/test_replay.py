"""Offline replay: the engine over a CSV, with no broker."""

from __future__ import annotations

import io
import json

import pytest

from models.artifact import load_model
from models.engine import DecisionEngine
from models.explain import SUDDEN_RUN
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
        away = event.window.current_absence_run >= SUDDEN_RUN  # a call home first, the check-in on return
        assert [a.value for a in event.suggested_actions[:1 + away]] == (
            ["call_home_to_listen", "check_in_conversation"] if away else ["check_in_conversation"])
        assert event.window.possible_ytd >= engine.policy.min_possible_sessions


def test_columnar_replay_writes_the_same_events_and_dead_letters(engine, csv_path, bad_rows):
    """`reconnect replay`'s columnar path against the engine fed row by row: the same events in the
    same order, the same report, the same dead letters (written in line order)."""
    from models.replay import replay_columnar
    from streams.mark_columns import read_mark_columns

    out, letters = io.StringIO(), io.StringIO()
    report, events = replay_file(csv_path, DecisionEngine(engine.model, window_days=126), out=out, dead_letters=letters)
    fast_out, fast_letters = io.StringIO(), io.StringIO()
    fast, fast_events = replay_columnar(read_mark_columns(csv_path), DecisionEngine(engine.model, window_days=126),
                                        out=fast_out, dead_letters=fast_letters)
    assert fast_out.getvalue() == out.getvalue() and fast_events == events
    assert (fast.read, fast.applied, fast.dead_lettered, fast.events, fast.outcomes) == (
        report.read, report.applied, report.dead_lettered, report.events, report.outcomes)
    assert {pupil: state.to_bytes() for pupil, state in fast.states.items()} == {
        pupil: state.to_bytes() for pupil, state in report.states.items()}

    def without_time(text: str) -> list[dict]:
        rows = [json.loads(line) for line in text.splitlines()]
        return sorted(({k: v for k, v in row.items() if k != "dead_lettered_at"} for row in rows), key=lambda r: r["line"])

    assert without_time(fast_letters.getvalue()) == without_time(letters.getvalue())
    assert len(fast_letters.getvalue().splitlines()) == len(bad_rows)


def test_the_replay_command_says_the_same_whichever_path(csv_path, tmp_path, model_path):
    from click.testing import CliRunner

    from streams.commands.modelling import replay as command

    outputs = []
    for flags in ([], ["--row-by-row"]):
        out = tmp_path / f"events{len(flags)}.jsonl"
        result = CliRunner().invoke(command, [str(csv_path), "--out", str(out), "--model", str(model_path), *flags])
        assert result.exit_code == 0, result.output
        outputs.append((out.read_text(), result.output.split("->")[0]))
    assert outputs[0] == outputs[1] and outputs[0][0]
