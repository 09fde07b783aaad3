"""`reconnect ingest` under hostile input, against the embedded broker: valid rows interleaved
with poison of every kind (issue 10's findings and a hypothesis-generated corpus). Every valid
row is published, every bad row is dead-lettered with its line number, reason and raw bytes,
the counts reconcile, the summary is printed, and the exit code says what happened."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devtools.broker import free_port
from devtools.harness import (
    consume_all,
    create_topics,
    isolated_env,
    reconnect_command,
    run_command,
)
from devtools.poison import (
    CSV_HEADER,
    csv_line,
    poison_row_cases,
    poison_rows,
    valid_mark_fields,
)
from schemas.deadletter import MAX_RAW_KEPT, DeadLetter
from schemas.interchange import read_marks
from schemas.marks import RejectReason
from streams.ingest import IngestExit, ingest_file

SUMMARY = re.compile(r"read (\d+), published (\d+), rejected (\d+) \(to dead-letter\)")


def run_ingest(path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return run_command(reconnect_command("ingest", str(path), *extra), env=env)


@pytest.fixture
def topics(broker):
    """This test's own topics on the embedded broker: (environment for a child, settings)."""
    env = isolated_env(broker.bootstrap, f"ingest{uuid.uuid4().hex[:8]}")
    return env, create_topics(env)


def write_csv(path: Path, lines: list[bytes], *, ending: bytes = b"\n", bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + CSV_HEADER + ending + ending.join(lines) + ending)
    return path


def valid_fields(count: int) -> list[dict[str, str]]:
    day = dt.date.today() - dt.timedelta(days=3)
    return [{"school_id": "SCH001", "pupil_id": f"SCH001-P{n:05d}", "date": day.isoformat(),
             "session": "AM" if n % 2 else "PM", "code": "/\\LINB"[n % 6] if n % 6 else "/",
             "recorded_at": f"{day.isoformat()}T08:{n % 60:02d}:00+00:00"} for n in range(count)]


def letters_of(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, DeadLetter]]:
    records = consume_all(bootstrap, topic, expected=expected, timeout=60)
    return [(record.key, DeadLetter.model_validate_json(record.value)) for record in records]


def kept_raw(letter: DeadLetter) -> bytes:
    return base64.b64decode(letter.raw) if letter.raw_encoding == "base64" else letter.raw.encode("utf-8")


@pytest.mark.broker
def test_every_kind_of_poison_row_is_dead_lettered_and_every_valid_row_published(topics, tmp_path):
    env, settings = topics
    poison = poison_rows()
    good = valid_fields(3 * len(poison) + 3)
    # Valid rows around every poison row, a blank line, CRLF endings and a BOM on the header.
    lines: list[bytes] = []
    expected_letters: dict[int, tuple[bytes, RejectReason, str]] = {}
    good_rows = iter(good)
    for row in poison:
        lines += [csv_line(next(good_rows)), csv_line(next(good_rows))]
        expected_letters[len(lines) + 2] = (row.line, row.reason, row.name)  # header is line 1
        lines.append(row.line)
        lines.append(csv_line(next(good_rows)))
    lines.append(b"")  # a blank line is not a row
    lines += [csv_line(fields) for fields in good_rows]
    path = write_csv(tmp_path / "hostile.csv", lines, ending=b"\r\n", bom=True)

    done = run_ingest(path, env)

    assert done.returncode == IngestExit.REJECTED, done.stderr
    read, published, rejected = map(int, SUMMARY.search(done.stdout).groups())
    assert (read, published, rejected) == (len(good) + len(poison), len(good), len(poison))
    for reason in {row.reason for row in poison}:
        assert re.search(rf"rejected\s+{sum(r.reason is reason for r in poison)}\s+{reason.value}\b", done.stdout)

    marks = consume_all(settings.bootstrap_list[0], settings.topic_marks, expected=len(good))
    assert sorted((r.key, json.loads(r.value)["pupil_id"]) for r in marks) == sorted(
        (f["pupil_id"].encode(), f["pupil_id"]) for f in good)

    letters = letters_of(settings.bootstrap_list[0], settings.topic_dead_letter, len(poison))
    assert sorted(letter.line for _, letter in letters) == sorted(expected_letters)
    for key, letter in letters:
        line, reason, name = expected_letters[letter.line]
        assert (letter.reason, letter.stage, letter.source_file) == (reason.value, "ingest", str(path)), name
        assert key == str(letter.line).encode()
        assert letter.header == CSV_HEADER.decode(), "the header (BOM removed) is kept for replay"
        assert letter.raw_bytes == len(line) and letter.raw_sha256 == hashlib.sha256(line).hexdigest(), name
        assert kept_raw(letter) == line[:MAX_RAW_KEPT], name
        assert letter.truncated == (len(line) > MAX_RAW_KEPT)
        if name == "not_utf8":
            assert letter.raw_encoding == "base64"


@pytest.mark.broker
def test_a_clean_file_exits_zero(topics, tmp_path):
    env, settings = topics
    path = write_csv(tmp_path / "clean.csv", [csv_line(fields) for fields in valid_fields(25)])
    done = run_ingest(path, env)
    assert done.returncode == IngestExit.PUBLISHED, done.stderr
    assert "read 25, published 25, rejected 0 (to dead-letter)" in done.stdout
    assert len(consume_all(settings.bootstrap_list[0], settings.topic_marks, expected=25)) == 25


@pytest.mark.broker
def test_a_line_of_many_megabytes_without_an_ending_is_one_rejected_row(topics, tmp_path):
    env, settings = topics
    good = valid_fields(2)
    huge = b"SCH001,SCH001-P99999,2026-01-01,AM," + b"x" * (8 * 1024 * 1024)
    path = tmp_path / "huge.csv"
    path.write_bytes(CSV_HEADER + b"\n" + csv_line(good[0]) + b"\n" + huge + b"\n" + csv_line(good[1]))
    done = run_ingest(path, env)
    assert done.returncode == IngestExit.REJECTED, done.stderr
    assert "read 3, published 2, rejected 1 (to dead-letter)" in done.stdout
    [(_, letter)] = letters_of(settings.bootstrap_list[0], settings.topic_dead_letter, 1)
    assert (letter.reason, letter.line, letter.raw_bytes, letter.truncated) == ("payload_too_large", 3, len(huge), True)
    assert letter.raw_sha256 == hashlib.sha256(huge).hexdigest()
    assert len(consume_all(settings.bootstrap_list[0], settings.topic_marks, expected=2)) == 2


@pytest.mark.parametrize("content, problem", [
    (b"", "is empty"),
    (b"school_id,pupil,date,session,code\nSCH1,P1,2026-01-01,AM,/\n", "header lacks pupil_id"),
    (b"\xff\xfeschool_id\n", "not UTF-8"),
    (b"school_id,pupil_id,date,session,code,code\n", "more than once"),
])
def test_a_file_without_a_usable_header_is_refused_before_anything_is_sent(tmp_path, content, problem):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    unreachable = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    done = run_ingest(path, unreachable)
    assert done.returncode == IngestExit.FILE_REFUSED
    assert problem in done.stderr
    assert "read 0, published 0, rejected 0 (to dead-letter): the file was refused" in done.stdout


@pytest.mark.slow
def test_an_unreachable_broker_fails_every_row_with_its_own_exit_code(tmp_path):
    path = write_csv(tmp_path / "marks.csv", [csv_line(fields) for fields in valid_fields(5)] + [b"SCH1,bad"])
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "RECONNECT_BROKER_CONNECT_RETRY_S": "1"}
    done = run_ingest(path, env)
    assert done.returncode == IngestExit.SEND_FAILED, done.stdout + done.stderr
    assert "read 6, published 0, rejected 0 (to dead-letter), FAILED to send 6" in done.stdout
    assert "first send failure" in done.stderr


@pytest.mark.broker
@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(corpus=st.lists(st.one_of(valid_mark_fields().map(lambda fields: (csv_line(fields), None)),
                                 poison_row_cases().map(lambda poison: (poison.line, poison.reason))),
                       min_size=20, max_size=80))
def test_a_generated_corpus_of_rows_reconciles_line_by_line(broker, tmp_path_factory, corpus):
    env = isolated_env(broker.bootstrap, f"corpus{uuid.uuid4().hex[:8]}")
    settings = create_topics(env)
    lines = [line for line, _ in corpus]
    path = write_csv(tmp_path_factory.mktemp("corpus") / "corpus.csv", lines)

    report = ingest_file(path, settings)

    valid = [(number, line) for number, (line, reason) in enumerate(corpus, start=2) if reason is None]
    poison = {number: reason for number, (line, reason) in enumerate(corpus, start=2) if reason is not None}
    assert report.read == len(corpus) == report.published + report.rejected and report.failed == 0
    assert (report.published, report.rejected) == (len(valid), len(poison))
    assert report.exit_code == (IngestExit.REJECTED if poison else IngestExit.PUBLISHED)

    # Every generated valid row carries its recorded_at, so its mark is the same whenever it is read.
    expected_marks = sorted(row.mark.to_wire() for row in read_marks(path) if row.mark is not None)
    assert len(expected_marks) == len(valid)
    marks = consume_all(broker.bootstrap, settings.topic_marks, expected=len(valid)) if valid else []
    assert sorted(record.value for record in marks) == expected_marks
    letters = letters_of(broker.bootstrap, settings.topic_dead_letter, len(poison)) if poison else []
    assert {letter.line: letter.reason for _, letter in letters} == {n: r.value for n, r in poison.items()}
