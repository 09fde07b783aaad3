"""The simulated school year: calendar, output format, ground truth and calibration."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from models.simulator.calendar import CalendarError, SchoolCalendar
from models.simulator.cohort import build_cohort
from models.simulator.episodes import DIP_KINDS, KINDS, NON_DIP_KINDS, ONE_OFF_KINDS
from models.simulator.generate import SimulationConfig, iter_days, simulate_year
from models.simulator.report import calibration_checks, failed_checks, render_report
from schemas.codes import CODES
from streams.simulate_cli import simulate
from streams.simulate_live import encode_mark, publish_live

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TODAY = dt.date(2026, 11, 23)
SMALL = SimulationConfig(schools=4, pupils_per_school=150, phase="mixed", seed=11)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_year(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("sim")
    paths = {"marks": out / "marks.csv", "truth": out / "truth.csv", "roster": out / "roster.csv"}
    summary = simulate_year(SMALL, paths["marks"], paths["truth"], paths["roster"])
    with open(paths["marks"], newline="") as handle:
        marks = list(csv.reader(handle))
    with open(paths["truth"], newline="") as handle:
        truth = list(csv.DictReader(handle))
    with open(paths["roster"], newline="") as handle:
        roster = list(csv.DictReader(handle))
    return {"summary": summary, "paths": paths, "marks": marks, "truth": truth, "roster": roster}


def final_codes(marks: list[list[str]]) -> dict[tuple[str, str, str], str]:
    """(pupil, date, session) -> code after amendments (the last row for a key wins)."""
    final: dict[tuple[str, str, str], str] = {}
    for _school, pupil, date, session, code, _recorded in marks[1:]:
        final[(pupil, date, session)] = code
    return final


# --- calendar ---------------------------------------------------------------------------


def test_default_calendar_is_an_english_2025_26_year() -> None:
    cal = SchoolCalendar.default()
    days = cal.school_days
    assert len(days) == 190
    assert cal.n_sessions == 380
    assert days == sorted(set(days))
    assert days[0] == dt.date(2025, 9, 3)  # after two INSET days
    assert dt.date(2026, 7, 15) <= days[-1] <= dt.date(2026, 7, 22)
    assert days[-1] < TODAY - dt.timedelta(days=31)  # far from "future" for the mark validator
    assert all(day.weekday() < 5 for day in days)
    for holiday in (dt.date(2025, 12, 25), dt.date(2026, 1, 1), dt.date(2026, 4, 3), dt.date(2026, 4, 6),
                    dt.date(2026, 5, 4), dt.date(2026, 5, 25)):
        assert not cal.is_school_day(holiday)
    for inset in cal.inset_days:
        assert not cal.is_school_day(inset)


def test_terms_half_terms_and_breaks() -> None:
    cal = SchoolCalendar.default()
    assert [t.name for t in cal.terms] == ["autumn", "spring", "summer"]
    per_term = Counter(cal.term_of(day) for day in cal.school_days)
    assert set(per_term) == {"autumn", "spring", "summer"}
    assert 65 <= per_term["autumn"] <= 75 and 50 <= per_term["spring"] <= 60 and 60 <= per_term["summer"] <= 70
    for term in cal.terms:
        half_term = cal.days_between(term.half_term_start, term.half_term_end)
        assert half_term == [], term.name
        assert term.half_term_end - term.half_term_start == dt.timedelta(days=4)
    christmas = cal.days_between(dt.date(2025, 12, 20), dt.date(2026, 1, 4))
    easter = cal.days_between(dt.date(2026, 3, 28), dt.date(2026, 4, 12))
    assert christmas == [] and easter == []
    assert cal.term_of(dt.date(2025, 12, 25)) is None
    assert cal.term_of(dt.date(2025, 10, 28)) == "autumn"  # half-term belongs to its term
    # Last day before the October half-term: no days left; a week earlier: one week left.
    assert cal.weeks_to_break(dt.date(2025, 10, 24)) == 0
    assert cal.weeks_to_break(dt.date(2025, 10, 17)) == 1
    assert cal.days_since_break[cal.day_index(dt.date(2025, 11, 4))] == 0
    assert cal.utc_offset(dt.date(2025, 9, 3)) == "+01:00" and cal.utc_offset(dt.date(2025, 12, 1)) == "+00:00"


def test_calendar_from_toml_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text(
        'name = "tiny"\nbank_holidays = [2025-09-08]\ninset_days = [2025-09-01]\n'
        "[[terms]]\nname = \"autumn\"\nstart = 2025-09-01\nend = 2025-09-26\n"
        "half_term = { start = 2025-09-15, end = 2025-09-19 }\n"
    )
    cal = SchoolCalendar.from_toml(path)
    assert len(cal.school_days) == 20 - 5 - 1 - 1
    assert dt.date(2025, 9, 8) not in cal.school_days and dt.date(2025, 9, 2) in cal.school_days
    path.write_text(
        "[[terms]]\nname = \"autumn\"\nstart = 2025-09-01\nend = 2025-09-26\n"
        "half_term = { start = 2025-10-15, end = 2025-10-19 }\n"
    )
    with pytest.raises(CalendarError):
        SchoolCalendar.from_toml(path)


# --- cohort -----------------------------------------------------------------------------


def test_cohort_demographics_in_national_proportions() -> None:
    cohort = build_cohort(40, 500, "mixed", np.random.default_rng(1))
    assert cohort.size == 20_000
    assert abs(cohort.fsm.mean() - 0.25) < 0.015
    assert 0.12 <= (cohort.sen == 1).mean() <= 0.15
    assert 0.025 <= (cohort.sen == 2).mean() <= 0.05
    # SEN is commoner among FSM pupils, as nationally.
    assert (cohort.sen[cohort.fsm] > 0).mean() > (cohort.sen[~cohort.fsm] > 0).mean()
    primary = cohort.phase == 0
    assert set(cohort.year_group[primary].tolist()) == set(range(0, 7))
    assert set(cohort.year_group[~primary].tolist()) == set(range(7, 12))
    assert set(cohort.school_phase.tolist()) == {0, 1}


# --- output format ----------------------------------------------------------------------


def test_marks_header_ids_codes_and_no_demographics(small_year: dict) -> None:
    marks = small_year["marks"]
    assert marks[0] == ["school_id", "pupil_id", "date", "session", "code", "recorded_at"]
    assert len(marks) - 1 == small_year["summary"].marks_written
    roster_pupils = {row["pupil_id"] for row in small_year["roster"]}
    for school, pupil, date, session, code, recorded in marks[1:]:
        assert ID_PATTERN.match(school) and ID_PATTERN.match(pupil) and pupil.startswith(school + "-")
        assert pupil in roster_pupils
        assert session in ("AM", "PM")
        assert code in CODES and not CODES[code].withdrawn
        assert dt.date.fromisoformat(date)
        stamp = dt.datetime.fromisoformat(recorded)
        assert stamp.utcoffset() is not None
    # Marks never carry who the pupil is beyond the pseudonym.
    demographic_words = {"sen_support", "ehcp", "none", "true", "false", "primary", "secondary"}
    assert not demographic_words & {cell for row in marks[1:] for cell in row}


def test_marks_are_in_register_order_with_later_amendments(small_year: dict) -> None:
    marks = small_year["marks"][1:]
    seen: dict[tuple[str, str, str], dt.datetime] = {}
    position: list[tuple[str, int, str]] = []
    amendments = morning_amendments = 0
    for school, pupil, date, session, code, recorded in marks:
        key = (pupil, date, session)
        stamp = dt.datetime.fromisoformat(recorded)
        if key in seen:
            amendments += 1
            assert stamp > seen[key], key
            # An amendment entered that morning sits between the AM and PM registers; any other
            # after its school's PM register.
            morning = stamp.date().isoformat() == date and stamp.time() < dt.time(13, 15)
            morning_amendments += morning
            position.append((date, 1 if morning else 3, school))
        else:
            seen[key] = stamp
            position.append((date, 0 if session == "AM" else 2, school))
            local = stamp.time()
            if session == "AM":
                assert dt.time(8, 45) <= local <= dt.time(10, 30), recorded
            else:
                assert dt.time(13, 15) <= local <= dt.time(13, 50), recorded
    assert position == sorted(position)  # by day, then session, then school
    assert amendments == small_year["summary"].amendments > morning_amendments > 0
    assert len(seen) == 600 * 380  # every pupil has exactly one original mark per session


def test_amendments_replace_n_with_a_reason(small_year: dict) -> None:
    rows_by_key: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for _school, pupil, date, session, code, _recorded in small_year["marks"][1:]:
        rows_by_key[(pupil, date, session)].append(code)
    amended = [codes for codes in rows_by_key.values() if len(codes) > 1]
    assert amended
    assert all(len(codes) == 2 and codes[0] == "N" and codes[1] != "N" for codes in amended)
    assert Counter(codes[1] for codes in amended).keys() <= {"I", "O", "G", "M"}


def test_roster_fields(small_year: dict) -> None:
    roster = small_year["roster"]
    assert list(roster[0]) == ["school_id", "pupil_id", "phase", "year_group", "sen", "fsm"]
    assert len(roster) == 600 and len({row["pupil_id"] for row in roster}) == 600
    for row in roster:
        assert row["phase"] in ("primary", "secondary")
        assert row["sen"] in ("none", "sen_support", "ehcp")
        assert row["fsm"] in ("true", "false")
        expected = ["R", "1", "2", "3", "4", "5", "6"] if row["phase"] == "primary" else ["7", "8", "9", "10", "11"]
        assert row["year_group"] in expected


def test_deterministic_by_seed(tmp_path: Path) -> None:
    config = SimulationConfig(schools=2, pupils_per_school=40, phase="mixed", seed=5)
    first, second, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    simulate_year(config, first, tmp_path / "ta.csv")
    simulate_year(config, second, tmp_path / "tb.csv")
    simulate_year(config.model_copy(update={"seed": 6}), other)
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "ta.csv").read_bytes() == (tmp_path / "tb.csv").read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_in_stream_stats_match_the_csv(small_year: dict) -> None:
    final = final_codes(small_year["marks"])
    phase_of = {row["pupil_id"]: row["phase"] for row in small_year["roster"]}
    possible: Counter[str] = Counter()
    absent: Counter[str] = Counter()
    unauthorised: Counter[str] = Counter()
    for (pupil, _date, _session), code in final.items():
        info = CODES[code]
        phase = phase_of[pupil]
        possible[phase] += info.possible_session
        absent[phase] += info.absence
        unauthorised[phase] += info.unauthorised
    for phase, stats in small_year["summary"].stats.items():
        assert stats.overall == pytest.approx(100 * absent[phase] / possible[phase])
        assert stats.unauthorised == pytest.approx(100 * unauthorised[phase] / possible[phase])


def test_iter_days_yields_the_same_marks_in_order() -> None:
    config = SimulationConfig(schools=2, pupils_per_school=30, phase="primary", seed=3)
    batches = list(iter_days(config))
    assert [b.date for b in batches] == SchoolCalendar.default().school_days
    assert all(len(b) >= 2 * 60 for b in batches)
    again = next(iter(iter_days(config)))
    assert np.array_equal(again.code, batches[0].code) and np.array_equal(again.pupil, batches[0].pupil)
    # A batch renders itself both ways, row for row.
    lines = batches[0].csv_text().splitlines()
    records = list(batches[0].records())
    assert len(lines) == len(records) == len(batches[0])
    assert lines[0] == ",".join(str(records[0][k]) for k in ("school_id", "pupil_id", "date", "session", "code",
                                                            "recorded_at"))


# --- ground truth -----------------------------------------------------------------------


def test_truth_covers_every_kind_with_valid_dates(small_year: dict) -> None:
    truth = small_year["truth"]
    assert list(truth[0]) == ["pupil_id", "school_id", "kind", "onset_date", "recovery_date"]
    kinds = Counter(row["kind"] for row in truth)
    assert set(kinds) == set(KINDS)
    cal = SchoolCalendar.default()
    school_of = {row["pupil_id"]: row["school_id"] for row in small_year["roster"]}
    dips_per_pupil = Counter(row["pupil_id"] for row in truth if row["kind"] in DIP_KINDS)
    assert max(dips_per_pupil.values()) == 1
    assert 0.06 <= len(dips_per_pupil) / 600 <= 0.08
    for row in truth:
        assert school_of[row["pupil_id"]] == row["school_id"]
        onset = dt.date.fromisoformat(row["onset_date"])
        assert cal.is_school_day(onset)
        if row["kind"] in DIP_KINDS:
            assert cal.day_index(onset) >= 30  # six weeks of baseline first
        if row["recovery_date"]:
            assert dt.date.fromisoformat(row["recovery_date"]) > onset
    # A one-off block has a first day back, unless it ran to the end of the year.
    late = set(d.isoformat() for d in cal.school_days[-16:])
    assert all(row["recovery_date"] or row["onset_date"] in late for row in truth
               if row["kind"] in (*ONE_OFF_KINDS, "suspension"))


def _pupil_days(final: dict, pupil: str, days: list[dt.date]) -> list[tuple[str, str]]:
    return [(final[(pupil, d.isoformat(), "AM")], final[(pupil, d.isoformat(), "PM")]) for d in days]


CLOSED = ("Y3", "Y4", "#")  # a closure overrides whatever the pupil was doing
BLOCK_SHAPES = {  # kind -> (code, fewest school days, most)
    "illness_block": ("I", 4, 16), "term_time_holiday": ("G", 4, 10), "bereavement": ("C", 3, 8),
    "suspension": ("E", 1, 5),
}


def test_non_dip_episodes_have_their_shape(small_year: dict) -> None:
    final = final_codes(small_year["marks"])
    cal = SchoolCalendar.default()
    rows = [row for row in small_year["truth"] if row["kind"] in NON_DIP_KINDS]
    assert {row["kind"] for row in rows} == set(NON_DIP_KINDS)
    for row in rows:
        onset = dt.date.fromisoformat(row["onset_date"])
        if row["kind"] == "low_steady":
            halves = np.array_split(np.array(cal.school_days, dtype=object), 2)
            rates = [
                np.mean([CODES[c].absence for pair in _pupil_days(final, row["pupil_id"], list(h)) for c in pair])
                for h in halves
            ]
            # 81-88% attendance on average, give or take session-level noise, and no trend.
            assert 0.08 <= np.mean(rates) <= 0.28, rates
            assert abs(rates[0] - rates[1]) < 0.12, rates
            continue
        recovery = dt.date.fromisoformat(row["recovery_date"]) if row["recovery_date"] else None
        episode = cal.days_between(onset, (recovery or cal.school_days[-1] + dt.timedelta(days=1)) - dt.timedelta(days=1))
        sessions = _pupil_days(final, row["pupil_id"], episode)
        if row["kind"] == "long_illness":
            codes = [c for pair in sessions for c in pair if c not in CLOSED]
            assert 15 <= len(episode) <= 40 and np.mean([c in ("I", "M") for c in codes]) > 0.8, row
            continue
        if row["kind"] == "part_time":
            assert all(pm in ("C2", *CLOSED) for _, pm in sessions), row
            continue
        code, fewest, most = BLOCK_SHAPES[row["kind"]]
        assert all(am in (code, *CLOSED) and pm in (code, *CLOSED) for am, pm in sessions), (row, sessions)
        assert fewest <= len(episode) <= most, row
        # The recovery date is the first school day after the episode: the pupil is due back.
        if recovery is not None:
            assert cal.is_school_day(recovery) and cal.day_index(recovery) == cal.day_index(episode[-1]) + 1


def test_closures_are_not_possible_sessions_for_whole_groups(small_year: dict) -> None:
    final = final_codes(small_year["marks"])
    closed = Counter((date, code) for (_pupil, date, _session), code in final.items() if code in CLOSED)
    assert closed, "partial and whole-school closures are simulated"
    assert all(not CODES[code].possible_session for _, code in closed)
    assert max(closed.values()) >= 20, "a closure takes a whole year group or school, not one pupil"


@pytest.mark.slow
def test_shifted_profile_changes_the_dynamics_not_the_format(tmp_path: Path) -> None:
    from models.simulator.profiles import DEFAULT, SHIFTED

    assert SimulationConfig().profile == "default" and SimulationConfig(profile="shifted").episode_profile is SHIFTED
    assert SHIFTED.recurrent_weekday != DEFAULT.recurrent_weekday
    assert SHIFTED.illness_peak_month_day != DEFAULT.illness_peak_month_day
    assert SHIFTED.holiday_two_week_share > DEFAULT.holiday_two_week_share
    config = SimulationConfig(schools=2, pupils_per_school=150, phase="mixed", seed=11, profile="shifted")
    marks, truth = tmp_path / "m.csv", tmp_path / "t.csv"
    shifted = simulate_year(config, marks_path=marks, truth_path=truth)
    default = simulate_year(config.model_copy(update={"profile": "default"}))
    assert marks.read_text().splitlines()[0] == "school_id,pupil_id,date,session,code,recorded_at"
    assert shifted.episodes_by_kind != default.episodes_by_kind
    # Recurrent illness falls on Fridays in the shifted profile.
    final = final_codes(list(csv.reader(marks.open())))
    rows = [r for r in csv.DictReader(truth.open()) if r["kind"] == "recurrent_illness"]
    days = Counter(dt.date.fromisoformat(date).weekday() for (pupil, date, session), code in final.items()
                   if code == "I" and session == "AM" and pupil in {r["pupil_id"] for r in rows}
                   and date >= min(r["onset_date"] for r in rows))
    assert days.most_common(1)[0][0] == 4


def _absence_rate(final: dict, pupil: str, days: list[dt.date], sessions: tuple[str, ...] = ("AM", "PM")) -> float:
    marks = [final[(pupil, d.isoformat(), s)] for d in days for s in sessions]
    return float(np.mean([CODES[c].absence for c in marks]))


def test_dips_lower_attendance_after_onset(small_year: dict) -> None:
    final = final_codes(small_year["marks"])
    cal = SchoolCalendar.default()
    for row in small_year["truth"]:
        if row["kind"] not in DIP_KINDS:
            continue
        pupil = row["pupil_id"]
        onset = cal.day_index(dt.date.fromisoformat(row["onset_date"]))
        recovery = row["recovery_date"]
        end = cal.day_index(dt.date.fromisoformat(recovery)) if recovery else len(cal.school_days)
        before = cal.school_days[max(0, onset - 25): onset]
        after = cal.school_days[onset: end]
        if row["kind"] == "young_carer":
            mornings = [final[(pupil, d.isoformat(), "AM")] for d in after]
            assert sum(code in ("L", "U", "N", "O") for code in mornings) / len(mornings) > 0.3
            assert _absence_rate(final, pupil, after, ("AM",)) > _absence_rate(final, pupil, after, ("PM",))
        elif row["kind"] == "recurrent_illness":
            weekday = [d for d in after if d.weekday() == 0]
            others = [d for d in after if d.weekday() in (2, 3, 4)]
            assert _absence_rate(final, pupil, weekday) > _absence_rate(final, pupil, others) + 0.3, row
        elif row["kind"] == "monday_friday":
            late = after[len(after) // 2:]
            mon_fri = [d for d in late if d.weekday() in (0, 4)]
            midweek = [d for d in late if d.weekday() in (1, 2, 3)]
            assert _absence_rate(final, pupil, mon_fri) > _absence_rate(final, pupil, midweek) + 0.2
        else:
            assert _absence_rate(final, pupil, after) > _absence_rate(final, pupil, before) + 0.15, row


# --- report, live, CLI ------------------------------------------------------------------


def test_report_checks_fail_when_stats_are_off(small_year: dict) -> None:
    stats = small_year["summary"].stats["secondary"]
    broken = stats.model_copy(update={"overall": stats.overall + 3.0, "friday_am": stats.wednesday_am - 1.0})
    failed = {check.measure for check in failed_checks(broken)}
    assert {"overall absence", "Friday - Wednesday, AM"} <= failed
    assert len(calibration_checks(stats)) == len(calibration_checks(broken))


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = False

    def send(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True


def test_live_publishes_a_day_range_in_register_order(small_year: dict) -> None:
    producer = FakeProducer()
    start, end = dt.date(2025, 10, 20), dt.date(2025, 10, 24)
    counts = publish_live(SMALL, from_date=start, to_date=end, producer=producer, topic="t.marks")
    expected = [row for row in small_year["marks"][1:] if start.isoformat() <= row[2] <= end.isoformat()]
    assert counts.days == 5 and counts.marks == len(expected) == len(producer.sent)
    assert producer.flushed
    for (topic, key, value), row in zip(producer.sent, expected):
        message = json.loads(value)
        assert topic == "t.marks" and key == row[1].encode()
        assert message == {"schema_version": 1, "school_id": row[0], "pupil_id": row[1], "date": row[2],
                           "session": row[3], "code": row[4], "recorded_at": row[5]}
        assert b" " not in value


def test_encode_mark_is_compact_json() -> None:
    key, value = encode_mark({"schema_version": 1, "pupil_id": "SCH001-P00001", "code": "\\"})
    assert key == b"SCH001-P00001"
    assert value == b'{"schema_version":1,"pupil_id":"SCH001-P00001","code":"\\\\"}'


def test_cli_writes_files_and_report(tmp_path: Path) -> None:
    marks, truth, roster = tmp_path / "m.csv", tmp_path / "t.csv", tmp_path / "r.csv"
    result = CliRunner().invoke(
        simulate,
        ["--schools", "2", "--pupils-per-school", "50", "--phase", "secondary", "--seed", "1", "--out", str(marks),
         "--truth", str(truth), "--roster", str(roster), "--report", "--no-progress"],
    )
    assert result.exit_code in (0, 1), result.output  # 1: a 100-pupil cohort may miss a tolerance
    assert "overall absence" in result.output and "secondary" in result.output
    assert marks.read_text().startswith("school_id,pupil_id,date,session,code,recorded_at\n")
    assert len(roster.read_text().splitlines()) == 101
    bad = CliRunner().invoke(simulate, ["--from-date", "2025-09-10"])
    assert bad.exit_code != 0


# --- calibration (slow) -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("phase", "schools", "pupils_per_school"), [("primary", 40, 250), ("secondary", 10, 1000)]
)
def test_calibrated_to_national_statistics(phase: str, schools: int, pupils_per_school: int, tmp_path: Path) -> None:
    config = SimulationConfig(schools=schools, pupils_per_school=pupils_per_school, phase=phase)
    summary = simulate_year(config, marks_path=tmp_path / "marks.csv")
    stats = summary.stats[phase]
    render_report(summary.stats)
    assert stats.pupils == 10_000
    assert not failed_checks(stats), failed_checks(stats)
    # The published gaps, in direction and rough size.
    assert 1.6 <= stats.fsm / stats.not_fsm <= 2.4
    assert stats.ehcp > stats.sen_support > stats.sen_none
    assert stats.friday_am > stats.wednesday_am and stats.friday_pm > stats.wednesday_pm
    assert summary.elapsed_seconds < 60
    assert summary.marks_written > 3_800_000


@pytest.mark.broker
def test_live_mode_reaches_a_real_broker() -> None:
    from kafka import KafkaConsumer

    from devtools.broker import BrokerError, EmbeddedBroker

    config = SimulationConfig(schools=1, pupils_per_school=40, phase="primary", seed=2)
    try:
        broker = EmbeddedBroker().start()
    except BrokerError as error:
        pytest.skip(f"no embedded broker: {error}")
    try:
        counts = publish_live(config, from_date=dt.date(2025, 9, 3), to_date=dt.date(2025, 9, 4),
                              bootstrap=[broker.bootstrap], topic="sim.marks.test")
        consumer = KafkaConsumer("sim.marks.test", bootstrap_servers=[broker.bootstrap],
                                 auto_offset_reset="earliest", consumer_timeout_ms=5000)
        received = [json.loads(message.value) for message in consumer]
        consumer.close()
    finally:
        broker.stop()
    assert counts.marks == len(received) >= 2 * 2 * 40
    assert {m["date"] for m in received} == {"2025-09-03", "2025-09-04"}


def test_marks_csv_passes_the_interchange_reader(small_year: dict) -> None:
    """The simulator's output is accepted row for row by the project's own CSV contract."""
    interchange = pytest.importorskip("schemas.interchange")
    # The first school weeks are enough to meet every kind of row (codes, amendments, BST).
    rows = list(itertools.islice(interchange.read_marks(small_year["paths"]["marks"], today=TODAY), 40_000))
    rejected = [row for row in rows if row.rejection is not None]
    assert not rejected, rejected[:3]
    assert len(rows) == 40_000
    assert {row.mark.code for row in rows if row.mark} >= {"/", "\\", "I", "N", "O"}
