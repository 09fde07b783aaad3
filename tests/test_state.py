"""Per-pupil state: idempotent under duplicates, redelivery and amendments, in any order."""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest

from devtools.registers import MONDAY, mark, pupil_marks
from models.state import FORMAT_VERSION, ApplyOutcome, OutsideWindowError, PupilState
from schemas.marks import Session

WINDOW = 126


def fresh(first) -> PupilState:
    return PupilState(first.school_id, WINDOW, first.date)


def apply_all(marks) -> PupilState:
    state = fresh(marks[0])
    for m in marks:
        state.apply(m)
    return state


def test_new_then_duplicate():
    m = mark("P1", MONDAY, "AM", "/")
    state = fresh(m)
    assert state.apply(m) is ApplyOutcome.NEW
    assert state.apply(m) is ApplyOutcome.DUPLICATE
    assert state.counted_marks() == 1


def test_amendment_replaces_rather_than_adds():
    original = mark("P1", MONDAY, "AM", "N", recorded="2025-09-08T09:05:00+00:00")
    amended = mark("P1", MONDAY, "AM", "I", recorded="2025-09-08T12:00:00+00:00")
    state = fresh(original)
    state.apply(original)
    assert state.apply(amended) is ApplyOutcome.AMENDED
    assert state.code_at(MONDAY, Session.AM) == "I"
    assert state.counted_marks() == 1
    # The original redelivered after the amendment does not undo it.
    assert state.apply(original) is ApplyOutcome.SUPERSEDED
    assert state.code_at(MONDAY, Session.AM) == "I"


def test_same_state_whatever_the_order_of_duplicates_and_amendments():
    marks = pupil_marks("P1", MONDAY, [("/", "\\"), ("N", "N"), ("/", "\\"), ("L", "\\")])
    marks += [mark("P1", MONDAY + dt.timedelta(days=1), "AM", "I", recorded="2025-09-09T12:00:00+00:00"),
              mark("P1", MONDAY + dt.timedelta(days=1), "PM", "I", recorded="2025-09-10T08:00:00+00:00")]
    marks += marks[:3]  # redelivered
    expected = None
    rng = random.Random(4)
    for _ in range(60):
        shuffled = marks[:]
        rng.shuffle(shuffled)
        state = PupilState("SCH1", WINDOW, max(m.date for m in marks))
        for m in shuffled:
            state.apply(m)
        snapshot = state.to_bytes()
        expected = expected or snapshot
        assert snapshot == expected
    assert state.code_at(MONDAY + dt.timedelta(days=1), Session.AM) == "I"


def test_ties_on_recording_time_are_broken_the_same_way_in_both_orders():
    a = mark("P1", MONDAY, "AM", "N", recorded="2025-09-08T09:00:00+00:00")
    b = mark("P1", MONDAY, "AM", "O", recorded="2025-09-08T09:00:00+00:00")
    results = set()
    for first, second in itertools.permutations([a, b]):
        state = fresh(a)
        state.apply(first)
        state.apply(second)
        results.add(state.code_at(MONDAY, Session.AM))
    assert len(results) == 1


def test_window_slides_and_folds_into_year_totals():
    days = [("/", "\\")] * 100 + [("N", "N")] * 30  # 26 weeks: longer than the 18-week window
    state = apply_all(pupil_marks("P1", MONDAY, days))
    assert state.folded_possible > 0
    held_possible = state.counted_marks()
    assert state.folded_possible + held_possible == 260
    assert state.folded_attended == state.folded_possible  # the folded early weeks were all present


def test_a_mark_older_than_the_window_is_refused_not_miscounted():
    state = apply_all(pupil_marks("P1", MONDAY, [("/", "\\")] * 120))
    before = state.to_bytes()
    with pytest.raises(OutsideWindowError):
        state.apply(mark("P1", MONDAY, "AM", "I", recorded="2026-03-01T10:00:00+00:00"))
    assert state.to_bytes() == before


def test_new_academic_year_resets_year_totals():
    state = apply_all(pupil_marks("P1", dt.date(2025, 1, 6), [("N", "N")] * 130))
    assert state.year == 2024
    state.apply(mark("P1", dt.date(2025, 9, 3), "AM", "/"))
    assert state.year == 2025
    assert state.folded_possible == 0


def test_binary_round_trip_and_size():
    state = apply_all(pupil_marks("P1", MONDAY, [("/", "\\"), ("I", "I"), ("L", "\\")] * 20))
    state.policy.flagged, state.policy.tier, state.policy.last_alert = True, 2, MONDAY.toordinal()
    restored = PupilState.from_bytes(state.to_bytes())
    assert restored == state
    assert restored.sessions() == state.sessions()
    assert restored.policy.flagged and restored.policy.tier == 2
    assert len(state.to_bytes()) < 900


def test_truncated_record_is_refused():
    state = apply_all(pupil_marks("P1", MONDAY, [("/", "\\")] * 5))
    with pytest.raises(ValueError):
        PupilState.from_bytes(state.to_bytes()[:-10])


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

recordings = st.lists(
    st.tuples(st.integers(0, 9), st.booleans(), st.sampled_from(["/", "\\", "N", "I", "O", "L", "U", "G"]),
              st.integers(0, 3)),
    min_size=1, max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(recordings, st.randoms(use_true_random=False))
def test_property_any_order_of_duplicates_and_amendments_gives_the_same_state(marks_spec, rng):
    """Recordings of sessions within two weeks (amended up to three times, each sent twice),
    applied in any order, leave exactly the same state."""
    marks = []
    for day_offset, pm, code, hours_later in marks_spec:
        day = MONDAY + dt.timedelta(days=day_offset)
        recorded = f"{day.isoformat()}T{9 + hours_later:02d}:00:00+00:00"
        marks.append(mark("P1", day, "PM" if pm else "AM", code, recorded=recorded))
    marks += marks  # every recording redelivered once
    latest = max(m.date for m in marks)
    reference = PupilState("SCH1", WINDOW, latest)
    for m in sorted(marks, key=lambda m: (m.recorded_at, m.code)):
        reference.apply(m)
    shuffled = marks[:]
    rng.shuffle(shuffled)
    state = PupilState("SCH1", WINDOW, latest)
    for m in shuffled:
        state.apply(m)
    assert state.to_bytes() == reference.to_bytes()
    assert state.counted_marks() == len({(m.date, m.session) for m in marks})


# -- format 4: exact recording times in two bytes a slot ----------------------------------------
# A record written by format 3 (the format before this one), stored as it was written: it must
# load, and hold exactly what `v3_marks()` builds today.
STORED_V3_RECORD = bytes.fromhex(
    "037e00c4480b00e9070000200000001a0000000600000004005343483101022a490b000000000000480003e9070102010201"
    "0201020000000001020102010201020102000000000102010201020102010200000000010201020102010201020000000001"
    "0201020102010201020000000001020102010201020102000000000102010201020102010200000000010201020102010201"
    "0200000000010201020102010201020000000014031403140314031403000000001403140314031403140300000000010201"
    "0201020102010200000000010201020102010201020000000001020102010201020102000000000102010201020102010200"
    "000000010201020102010201020000000001020102010201020d02000000000102010f01020102010200000000130090586e"
    "30d8976e3010aa6f3058e96f3090fb7030d83a7130104d7230588c72300000000000000000000000000000000090417630d8"
    "8076301093773058d2773090e47830d823793010367a3058757a3090877b30d8c67b30000000000000000000000000000000"
    "00107c7f3058bb7f3090cd8030d80c8130101f8230585e823090708330d8af833010c2843058018530000000000000000000"
    "0000000000000090b68830d8f5883010088a3058478a3090598b30d8988b3010ab8c3058ea8c3090fc8d30d83b8e30000000"
    "0000000000000000000000000010f191305830923090429330d88193301094943058d3943090e59530d82496301037973058"
    "76973000000000000000000000000000000000902b9b30d86a9b30107d9c3058bc9c3090ce9d30d80d9e3010209f30585f9f"
    "309071a030d8b0a030000000000000000000000000000000001066a43058a5a43090b7a530d8f6a5301009a7305848a73090"
    "5aa830d899a83010aca93058eba9300000000000000000000000000000000090a0ad30d8dfad3010f2ae305831af309043b0"
    "30d882b0301095b13058d4b13090e6b230d825b3300000000000000000000000000000000010dbb630581ab730902cb830d8"
    "6bb830107eb93058bdb93090cfba30d80ebb301021bc305860bc30000000000000000000000000000000009015c030d854c0"
    "301067c13058a6c13090b8c230d8f7c230100ac4305849c430905bc530d89ac5300000000000000000000000000000000010"
    "50c930588fc93090a1ca30d8e0ca3010f3cb305832cc309044cd30d883cd301096ce3058d5ce300000000000000000000000"
    "0000000000908ad230d8c9d23010dcd330581bd430902dd530d86cd530107fd63058bed63090d0d730d80fd8300000000000"
    "000000000000000000000010c5db305804dc309016dd30d855dd301068de3058a7de3090b9df30d8f8df30100be130584ae1"
    "300000000000000000000000000000000090ffe430d83ee5301051e6305890e63090a2e730d8e1e73010f4e8305833e93090"
    "45ea30d884ea3000000000000000000000000000000000103aee305879ee30908bef30d8caef3010ddf030581cf130902ef2"
    "30d86df2301080f33058bff330000000000000000000000000000000009074f730d8b3f73010c6f8305805f9309017fa30d8"
    "56fa301069fb3058a8fb3090bafc30d8f9fc300000000000000000000000000000000010af003158ee003190000231d83f02"
    "31105203315891033190a30431d8e20431401f0631583406310000000000000000000000000000000090e90931d8280a3110"
    "3b0b3100d00d31908c0c31d8cb0c3110de0d31581d0e31902f0f31d86e0f3100000000000000000000000000000000f0830f"
    "3100000000"
)


def v3_marks():
    """What the stored record was built from: illness that slid out of the window (folded), a dip,
    an amendment at noon, a correction two days later, an older recording that loses, leave
    entered ahead of its day, and a flagged policy state."""
    days = [("I", "I")] * 3 + [("/", "\\")] * 57 + [("N", "L")] * 10 + [("/", "\\")] * 35
    marks = pupil_marks("P1", MONDAY, days)
    last = marks[-1].date
    marks.append(mark("P1", last - dt.timedelta(days=7), "AM", "I", recorded=f"{last - dt.timedelta(days=7)}T12:00:00+00:00"))
    marks.append(mark("P1", last - dt.timedelta(days=3), "PM", "M", recorded=f"{last - dt.timedelta(days=1)}T08:00:00+00:00"))
    marks.append(mark("P1", last, "PM", "C", recorded=f"{last - dt.timedelta(days=2)}T16:00:00+00:00"))
    marks.append(mark("P1", last + dt.timedelta(days=3), "AM", "G", recorded=f"{last}T15:00:00+00:00"))
    state = PupilState("SCH1", WINDOW, marks[0].date)
    for m in marks:
        state.apply(m)
    policy = state.policy
    policy.flagged, policy.tier, policy.last_alert = True, 2, (last - dt.timedelta(days=20)).toordinal()
    policy.alert_rate_pct, policy.alert_reason, policy.health_needs_year = 72, 3, 2025
    return state


def test_a_stored_format_3_record_loads_as_the_same_state():
    assert STORED_V3_RECORD[0] == 3 and FORMAT_VERSION == 4
    old = PupilState.from_bytes(STORED_V3_RECORD)
    today = v3_marks()
    assert old == today  # compared in the current format
    assert old.sessions() == today.sessions() and list(old.stamps) == list(today.stamps)
    assert (old.folded_possible, old.folded_attended, old.folded_health) == (32, 26, 6)
    assert (old.policy.flagged, old.policy.tier, old.policy.alert_rate_pct, old.policy.health_needs_year) == (
        True, 2, 72, 2025)
    assert PupilState.from_bytes(old.to_bytes()) == old
    assert len(old.to_bytes()) < len(STORED_V3_RECORD) * 2 // 3


def test_recordings_on_other_days_keep_their_exact_time_and_still_decide_amendments():
    state = v3_marks()
    assert len(state.overflow) == 2  # the correction two days later and the leave entered ahead
    restored = PupilState.from_bytes(state.to_bytes())
    last = restored.latest_date
    leave_day = last
    # The leave was recorded at 15:00 three days before its day: an earlier recording loses, a later one wins.
    earlier = mark("P1", leave_day, "AM", "N", recorded=f"{leave_day - dt.timedelta(days=3)}T14:59:59+00:00")
    later = mark("P1", leave_day, "AM", "N", recorded=f"{leave_day - dt.timedelta(days=3)}T15:00:01+00:00")
    assert restored.apply(earlier) is ApplyOutcome.SUPERSEDED
    assert restored.apply(later) is ApplyOutcome.AMENDED and restored.code_at(leave_day, Session.AM) == "N"
    assert leave_day.toordinal() - restored.origin + 1 == WINDOW


def test_a_full_window_is_under_a_kilobyte_and_so_is_a_tracked_pupil():
    import tracemalloc

    days = [("/", "\\"), ("/", "\\"), ("I", "I"), ("/", "L"), ("N", "\\")] * 26
    template = apply_all(pupil_marks("P1", MONDAY, days))
    record = template.to_bytes()
    assert template.latest_ordinal - template.origin + 1 == WINDOW and template.counted_marks() >= 170
    assert len(record) < 850
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = {f"SCH{i // 1000:03d}-P{i:05d}": bytes(record[:-1] + bytes([i % 2])) for i in range(2000)}
    per_pupil = (tracemalloc.get_traced_memory()[0] - before) / len(table)
    tracemalloc.stop()
    assert per_pupil <= 1024, per_pupil


def test_a_truncated_or_padded_format_4_record_is_refused():
    record = v3_marks().to_bytes()
    for bad in (record[:-1], record[:40], record + b"\x00"):
        with pytest.raises(ValueError):
            PupilState.from_bytes(bad)
    with pytest.raises(ValueError):
        PupilState.from_bytes(b"\x09" + record[1:])
