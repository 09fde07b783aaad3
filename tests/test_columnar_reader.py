"""The columnar reader (streams.mark_columns) against read_marks: the same valid marks on the same
lines, and the same rejected rows with the same reason, detail and bytes, whatever the file holds."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.poison import (
    CSV_HEADER,
    csv_line,
    mark_fields,
    poison_row_cases,
    poison_rows,
    valid_mark_fields,
)
from schemas.codes import CODES
from schemas.interchange import InterchangeFormatError, read_marks
from schemas.marks import MarkLimits
from schemas.recording import recording_stamp
from streams import mark_columns
from streams.mark_columns import read_mark_columns

TODAY = dt.date(2026, 1, 15)
NOW = dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc)


def readings(path, **kwargs):
    kwargs = {"today": TODAY, "now": NOW, **kwargs}
    columnar = read_mark_columns(path, **kwargs)
    rows = list(read_marks(path, **kwargs))
    c = columnar.columns
    got = [(int(c.line[i]), c.pupil_ids[c.pupil[i]], c.school_ids[c.school[i]], int(c.ordinal[i]), bool(c.pm[i]),
            int(c.code[i]), int(c.stamp[i])) for i in range(len(c))]
    want = [(r.line, r.mark.pupil_id, r.mark.school_id, r.mark.date.toordinal(), r.mark.session.value == "PM",
             CODES[r.mark.code].index, recording_stamp(r.mark.recorded_at)) for r in rows if r.mark is not None]
    got_rejected = [(r.line, r.raw, r.rejection.reason, r.rejection.detail, r.header, r.raw_size, r.raw_sha256)
                    for r in columnar.rejected]
    want_rejected = [(r.line, r.raw, r.rejection.reason, r.rejection.detail, r.header, r.raw_size, r.raw_sha256)
                     for r in rows if r.rejection is not None]
    return (got, got_rejected, columnar.read), (want, want_rejected, len(rows))


def assert_same_reading(path, **kwargs):
    got, want = readings(path, **kwargs)
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert got[2] == want[2]
    return got


def write(path, lines: list[bytes], *, header: bytes = CSV_HEADER, ending: bytes = b"\n", final: bool = True):
    path.write_bytes(header + ending + ending.join(lines) + (ending if final else b""))
    return path


def test_the_crafted_cohort_with_bad_rows_reads_the_same(crafted_csv, bad_rows):
    got = assert_same_reading(crafted_csv(extra_rows=bad_rows))
    assert len(got[0]) > 1000 and len(got[1]) == len(bad_rows)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
@pytest.mark.parametrize("final", [True, False])
def test_every_named_poison_row_among_valid_ones(tmp_path, ending, final):
    valid = [csv_line(mark_fields(TODAY, pupil_id=f"SCH001-P{i:05d}")) for i in range(40)]
    poison = [row.line for row in poison_rows(TODAY)]
    lines = [line for pair in zip(valid, poison + [b""] * len(valid)) for line in pair if line] + valid[:3]
    got = assert_same_reading(write(tmp_path / "poison.csv", lines, ending=ending, final=final))
    assert len(got[1]) == len(poison)


@pytest.mark.parametrize("stamp", [
    "2026-01-14T09:00:00+00:00", "2026-01-14T09:00:00Z", "2026-01-14T09:00:00", "2026-01-14T09:00:00.123+01:00",
    "2026-01-14T09:00:00.123456-05:30", "2026-01-14 09:00:00", "2026-01-14T09:00:00.12345Z", "20260114T090000",
    "2026-02-29T09:00:00Z", "2024-02-29T09:00:00Z", "2026-01-14T24:00:00Z", "2026-01-14T09:00:00+24:00",
    "2026-01-14T09:00:00+0100", "1999-12-31T23:59:59Z", "2026-01-15T10:15:00Z", "2026-01-15T10:15:00.000001Z",
    "2026-01-15T10:14:59.999999Z", "2026-01-15T11:15:00+01:00", "", " 2026-01-14T09:00:00Z", "9999-12-31T23:59:59-12:00",
])
def test_recording_times_of_every_form_read_the_same(tmp_path, stamp):
    lines = [csv_line(mark_fields(TODAY, recorded_at=stamp)), csv_line(mark_fields(TODAY, session="PM", recorded_at=stamp))]
    assert_same_reading(write(tmp_path / "stamps.csv", lines))


@pytest.mark.parametrize("header", [
    b"\xef\xbb\xbfschool_id,pupil_id,date,session,code,recorded_at",  # a byte-order mark
    b"pupil_id,school_id,code,session,date,recorded_at,comment",  # other order, an extra column
    b"school_id,pupil_id,date,session,code",  # no recording times: the import's time
    b"school_id,pupil_id,date,session,code,recorded_at,original_code",  # read row by row
    b"School_ID , pupil_id,date,session,code,recorded_at,",  # spaces, case, a blank column
])
def test_headers_read_the_same(tmp_path, header):
    columns = [column.strip().lower() for column in header.decode("utf-8-sig").split(",")]
    lines = []
    for i in range(30):
        fields = mark_fields(TODAY, pupil_id=f"P{i:03d}", code=["/", "N", "I", " l ", "H"][i % 5], comment="x",
                             original_code="H" if i % 7 == 0 else "")
        fields[""] = ""
        lines.append(",".join(str(fields.get(column, "")) for column in columns).encode())
    assert_same_reading(write(tmp_path / "header.csv", lines, header=header), recorded_at_default=NOW)


def test_a_header_that_is_not_one_is_refused_the_same_way(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"pupil,day\n1,2\n")
    with pytest.raises(InterchangeFormatError) as columnar:
        read_mark_columns(path)
    with pytest.raises(InterchangeFormatError) as rows:
        list(read_marks(path))
    assert str(columnar.value) == str(rows.value)


def test_over_long_lines_and_blocks_split_mid_file(tmp_path, monkeypatch):
    monkeypatch.setattr(mark_columns, "BLOCK_BYTES", 700)  # many blocks, lines cut at block ends
    limits = MarkLimits(max_message_bytes=300)
    lines = [csv_line(mark_fields(TODAY, pupil_id=f"P{i:03d}")) for i in range(60)]
    lines[7] = lines[7] + b"," + b"x" * 400  # longer than the row limit, and than a block
    lines[20] = b"y" * 5000
    lines[33] = lines[33] + b"\r"  # a carriage return that is not a line ending
    lines[41] = b""
    got = assert_same_reading(write(tmp_path / "long.csv", lines, ending=b"\r\n"), limits=limits)
    assert len(got[1]) == 3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(valid_mark_fields(TODAY).map(csv_line), poison_row_cases(TODAY).map(lambda row: row.line),
                          st.binary(max_size=80)), min_size=1, max_size=60),
       st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_any_file_reads_the_same(tmp_path_factory, lines, ending, final):
    path = tmp_path_factory.mktemp("any") / "marks.csv"
    lines = [line.replace(b"\n", b" ") for line in lines]
    assert_same_reading(write(path, lines, ending=ending, final=final))
