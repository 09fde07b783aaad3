"""`reconnect dead-letters`: list what was dead-lettered without showing raw pupil data, and replay
it once the cause is fixed (here: a limit raised), idempotently, against the embedded broker."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import uuid

import pytest

from devtools.harness import (
    consume_all,
    create_topics,
    isolated_env,
    produce_raw,
    reconnect_command,
    run_command,
)
from devtools.poison import CSV_HEADER, csv_line
from schemas import topics as topics_module
from schemas.deadletter import MAX_RAW_KEPT, DeadLetter, dead_letter
from schemas.marks import MarkLimits, MarkRejected, RejectReason, parse_mark_json
from streams.deadletters import Selection, StoredLetter, describe, parse_since, rebuild
from streams.settings import Settings
from streams.topic_admin import topic_specs

TODAY = dt.date.today()
NOW = dt.datetime.now(dt.timezone.utc)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_command(reconnect_command(*args), env=env)


def row(pupil: str, *, days_ahead: int, code: str = "C", recorded: bool = True) -> dict[str, str]:
    day = TODAY + dt.timedelta(days=days_ahead)
    return {"school_id": "SCH001", "pupil_id": pupil, "date": day.isoformat(), "session": "AM", "code": code,
            "recorded_at": (NOW - dt.timedelta(hours=1)).isoformat(timespec="seconds") if recorded else ""}


@pytest.fixture
def topics(broker):
    env = isolated_env(broker.bootstrap, f"letters{uuid.uuid4().hex[:8]}")
    return env, create_topics(env)


@pytest.mark.broker
@pytest.mark.slow
def test_dead_letters_are_listed_without_raw_data_then_replayed_after_the_limit_is_raised(topics, tmp_path):
    env, settings = topics
    bootstrap = settings.bootstrap_list[0]
    # Planned leave entered 40 days ahead is refused under the 31-day limit; a trust then allows 60.
    planned = [row(f"SCH001-P{n:05d}", days_ahead=40, recorded=n % 2 == 0) for n in range(4)]
    unknown = [row("SCH001-P00900", days_ahead=-3, code="Q7")]
    valid = [row(f"SCH001-P{n:05d}", days_ahead=-3, code="/") for n in range(100, 103)]
    path = tmp_path / "leave.csv"
    path.write_bytes(CSV_HEADER + b"\n" + b"\n".join(csv_line(r) for r in valid + planned + unknown) + b"\n")
    ingested = cli("ingest", str(path), env=env)
    assert ingested.returncode == 3, ingested.stderr
    # A worker-stage dead letter too: a message dated 45 days ahead, as the worker records it.
    message = json.dumps(row("SCH001-P00777", days_ahead=45)).encode()
    with pytest.raises(MarkRejected):
        parse_mark_json(message)
    worker_letter = dead_letter(MarkRejected(RejectReason.FUTURE_DATE, "date ahead"), message, stage="worker",
                                topic=settings.topic_marks, partition=1, offset=17)
    produce_raw(bootstrap, settings.topic_dead_letter, [(b"k", worker_letter.model_dump_json().encode())])
    assert len(consume_all(bootstrap, settings.topic_dead_letter, expected=6)) == 6

    listed = cli("dead-letters", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"6 dead letters", listed.stdout)
    assert re.search(r"\b5\s+future_date\b", listed.stdout) and re.search(r"\b1\s+unknown_code\b", listed.stdout)
    assert re.search(r"\b5\s+ingest\b", listed.stdout) and re.search(r"\b1\s+worker\b", listed.stdout)
    assert f"{path} line 6" in listed.stdout and f"{settings.topic_marks}[1]@17" in listed.stdout
    assert "SCH001-P" not in listed.stdout, "the listing must not show raw pupil data"
    shown = cli("dead-letters", "list", "--reason", "unknown_code", "--show-raw", env=env)
    assert "1 dead letters selected" in shown.stdout and "SCH001-P00900" in shown.stdout
    assert "pupil data" in shown.stderr

    # Before the fix a replay publishes nothing: each is still rejected, with its reason.
    unfixed = cli("dead-letters", "replay", "--reason", "future_date", env=env)
    assert unfixed.returncode == 3, unfixed.stdout + unfixed.stderr
    assert "selected 5, replayed 0, still rejected 5" in unfixed.stdout
    assert len(consume_all(bootstrap, settings.topic_marks, idle_s=2)) == len(valid)

    fixed_env = {**env, "RECONNECT_MAX_FUTURE_DAYS": "60"}
    dry = cli("dead-letters", "replay", "--reason", "future_date", "--dry-run", env=fixed_env)
    assert "dry run: selected 5, replayed 5" in dry.stdout
    assert len(consume_all(bootstrap, settings.topic_marks, idle_s=2)) == len(valid)

    fixed = cli("dead-letters", "replay", "--reason", "future_date", env=fixed_env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "selected 5, replayed 5, still rejected 0, not replayable 0" in fixed.stdout
    marks = consume_all(bootstrap, settings.topic_marks, expected=len(valid) + 5)
    replayed = {record.key: record.value for record in marks if json.loads(record.value)["date"] > TODAY.isoformat()}
    assert set(replayed) == {r["pupil_id"].encode() for r in planned} | {b"SCH001-P00777"}
    assert replayed[b"SCH001-P00777"] == message, "a worker-stage message is replayed byte for byte"
    for r in planned:
        mark = json.loads(replayed[r["pupil_id"].encode()])
        assert (mark["date"], mark["code"]) == (r["date"], "C")
        if not r["recorded_at"]:  # a row without recorded_at keeps the time of its import
            letter_time = dt.datetime.fromisoformat(mark["recorded_at"].replace("Z", "+00:00"))
            assert abs((letter_time - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 300

    # Replaying again publishes the very same records: idempotent in effect downstream.
    again = cli("dead-letters", "replay", "--reason", "future_date", env=fixed_env)
    assert "selected 5, replayed 5" in again.stdout
    later = consume_all(bootstrap, settings.topic_marks, expected=len(valid) + 10)
    twice = [(r.key, r.value) for r in later if json.loads(r.value)["date"] > TODAY.isoformat()]
    assert sorted(twice) == sorted(list(replayed.items()) * 2)


@pytest.mark.broker
@pytest.mark.slow
def test_replay_needs_a_filter_or_all(topics):
    env, _ = topics
    refused = cli("dead-letters", "replay", env=env)
    assert refused.returncode == 2 and "--all" in refused.stderr
    everything = cli("dead-letters", "replay", "--all", env=env)
    assert everything.returncode == 0 and "selected 0, replayed 0" in everything.stdout


def test_the_listing_line_hides_raw_input_and_detail():
    letter = dead_letter(MarkRejected(RejectReason.MALFORMED_ID, "session 'Jane' is not AM or PM"),
                         "SCH1,Jane Smith,2026-01-01,AM,/", stage="ingest", source_file="x.csv", line=4,
                         header=CSV_HEADER.decode())
    stored = StoredLetter(0, 3, b"4", letter)
    assert "Jane" not in "\n".join(describe(stored, show_raw=False))
    assert "x.csv line 4" in describe(stored, show_raw=False)[0]
    assert "Jane Smith" in "\n".join(describe(stored, show_raw=True))


def test_a_row_is_rebuilt_from_its_header_and_a_message_from_its_bytes():
    header = "pupil_id,school_id,date,session,code"  # any column order: the stored header says which
    raw = f"SCH001-P00001,SCH001,{(TODAY + dt.timedelta(days=40)).isoformat()},PM,C".encode()
    letter = dead_letter(MarkRejected(RejectReason.FUTURE_DATE, "ahead"), raw, stage="ingest", source_file="f.csv",
                         line=2, header=header)
    with pytest.raises(MarkRejected) as still:
        rebuild(letter, limits=MarkLimits(), today=TODAY, now=None)
    assert still.value.reason is RejectReason.FUTURE_DATE
    rebuilt = rebuild(letter, limits=MarkLimits(max_future_days=60), today=TODAY, now=None)
    mark = json.loads(rebuilt.value)
    assert rebuilt.key == b"SCH001-P00001" and mark["session"] == "PM"
    assert mark["recorded_at"].startswith(letter.dead_lettered_at.isoformat()[:19])


@pytest.mark.parametrize("problem, letter", [
    ("truncated", dead_letter(MarkRejected(RejectReason.PAYLOAD_TOO_LARGE, "big"), b"x" * (MAX_RAW_KEPT + 1),
                              stage="worker", topic="t", partition=0, offset=1)),
    ("no_source", dead_letter(MarkRejected(RejectReason.UNKNOWN_CODE, "?"), b"{}", stage="replay")),
    ("unreadable_header", dead_letter(MarkRejected(RejectReason.UNKNOWN_CODE, "?"), b"a,b", stage="ingest",
                                      source_file="f.csv", line=2, header="a,b")),
])
def test_what_cannot_be_rebuilt_says_why(problem, letter):
    with pytest.raises(ValueError, match=problem):
        rebuild(letter, limits=MarkLimits(), today=TODAY, now=None)


def test_selection_and_since():
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    assert parse_since("12h", now=now) == now - dt.timedelta(hours=12)
    assert parse_since("7d", now=now) == now - dt.timedelta(days=7)
    assert parse_since("2026-11-30", now=now) == dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    with pytest.raises(ValueError):
        parse_since("last tuesday", now=now)
    letter = dead_letter(MarkRejected(RejectReason.FUTURE_DATE, "ahead"), b"x", stage="ingest", source_file="a.csv",
                         line=2)
    stored = StoredLetter(0, 0, None, letter)
    assert Selection()(stored) and Selection().is_everything
    assert Selection(reasons=frozenset({"future_date"}), stages=frozenset({"ingest"}), source_file="a.csv")(stored)
    assert not Selection(reasons=frozenset({"unknown_code"}))(stored)
    assert not Selection(since=letter.dead_lettered_at + dt.timedelta(seconds=1))(stored)
    assert not Selection(stages=frozenset({"worker"}))(stored)
    unreadable = StoredLetter(0, 1, None, None, "not a dead letter")
    assert Selection()(unreadable) and not Selection(stages=frozenset({"ingest"}))(unreadable)


def test_dead_letters_are_kept_for_the_configured_retention_only():
    specs = {spec.name: spec for spec in topic_specs(Settings(dead_letter_retention_days=7))}
    assert specs[topics_module.DEAD_LETTER].config["retention.ms"] == str(7 * 86_400_000)
    assert "RECONNECT_DEAD_LETTER_RETENTION_DAYS" in (DeadLetter.__doc__ or "")
