"""Calibration statistics gathered in-stream, session by session, from the final codes.

Counters are per pupil (for persistent and severe absence and group rates) or tiny aggregate
arrays (per weekday, per day, per code), so a report never needs the CSV re-read.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from pydantic import BaseModel

from models.simulator import codes as C
from models.simulator.calendar import SchoolCalendar
from models.simulator.cohort import PHASE_NAMES, SEN_EHCP, SEN_NONE, SEN_SUPPORT, Cohort

MAX_SPELL = 400  # sessions; longer runs are folded into the last bin


class PhaseStats(BaseModel):
    """Simulated statistics for one phase, in percent unless named otherwise."""

    phase: str
    pupils: int
    sessions: int
    overall: float
    authorised: float
    unauthorised: float
    persistent: float
    severe: float
    fsm: float
    not_fsm: float
    sen_none: float
    sen_support: float
    ehcp: float
    fsm_persistent: float
    not_fsm_persistent: float
    wednesday_am: float
    wednesday_pm: float
    friday_am: float
    friday_pm: float
    present_code_share: float  # sessions marked / or \
    spells_2_to_4_share: float  # absence spells lasting 2 to 4 sessions
    part_time_pupils: float  # pupils with any C2 mark
    autumn_first_week: float
    autumn_before_half_term: float
    autumn_after_half_term: float
    autumn_last_week: float
    autumn: float
    spring: float
    summer: float
    illness: float  # I marks as a share of possible sessions
    code_counts: dict[str, int]

    @property
    def friday_minus_wednesday_am(self) -> float:
        return self.friday_am - self.wednesday_am

    @property
    def friday_minus_wednesday_pm(self) -> float:
        return self.friday_pm - self.wednesday_pm


def _pct(numerator: float, denominator: float) -> float:
    return 100.0 * float(numerator) / float(denominator) if denominator else float("nan")


class CalibrationAccumulator:
    def __init__(self, cohort: Cohort, calendar: SchoolCalendar) -> None:
        n = cohort.size
        self.cohort = cohort
        self.calendar = calendar
        self.possible = np.zeros(n, dtype=np.int32)
        self.absent = np.zeros(n, dtype=np.int32)
        self.authorised = np.zeros(n, dtype=np.int32)
        self.unauthorised = np.zeros(n, dtype=np.int32)
        self.part_time = np.zeros(n, dtype=bool)
        self.run_length = np.zeros(n, dtype=np.int32)
        self.spell_lengths = np.zeros((2, MAX_SPELL + 1), dtype=np.int64)
        n_days = len(calendar.school_days)
        # [phase, day, session] absent and possible sessions.
        self.day_absent = np.zeros((2, n_days, 2), dtype=np.int64)
        self.day_possible = np.zeros((2, n_days, 2), dtype=np.int64)
        self.code_counts = np.zeros((2, C.N_CODES), dtype=np.int64)

    def add(self, day_index: int, session: int, codes: np.ndarray) -> None:
        phase = self.cohort.phase
        possible = C.IS_POSSIBLE[codes]
        absent = C.IS_ABSENCE[codes]
        self.possible += possible
        self.absent += absent
        self.authorised += C.IS_AUTHORISED[codes]
        self.unauthorised += C.IS_UNAUTHORISED[codes]
        self.part_time |= codes == C.PART_TIME
        self.day_absent[:, day_index, session] = np.bincount(phase, weights=absent, minlength=2)
        self.day_possible[:, day_index, session] = np.bincount(phase, weights=possible, minlength=2)
        self.code_counts += np.bincount(phase.astype(np.int64) * C.N_CODES + codes, minlength=2 * C.N_CODES).reshape(
            2, C.N_CODES
        )
        self._track_spells(absent)

    def _track_spells(self, absent: np.ndarray) -> None:
        ended = np.flatnonzero(~absent & (self.run_length > 0))
        if ended.size:
            self._record_spells(ended)
        self.run_length = np.where(absent, self.run_length + 1, 0).astype(np.int32)

    def _record_spells(self, who: np.ndarray) -> None:
        lengths = np.minimum(self.run_length[who], MAX_SPELL)
        np.add.at(self.spell_lengths, (self.cohort.phase[who], lengths), 1)

    def finish(self) -> dict[str, PhaseStats]:
        """Statistics per phase present in the cohort (spells still open count as ended)."""
        open_spells = np.flatnonzero(self.run_length > 0)
        if open_spells.size:
            self._record_spells(open_spells)
            self.run_length[:] = 0
        return {
            PHASE_NAMES[phase]: self._phase_stats(phase)
            for phase in (0, 1)
            if bool((self.cohort.phase == phase).any())
        }

    def _phase_stats(self, phase: int) -> PhaseStats:
        cohort, cal = self.cohort, self.calendar
        mask = cohort.phase == phase
        possible = self.possible[mask]
        absent = self.absent[mask]
        rate = np.divide(absent, possible, out=np.zeros(possible.shape, dtype=np.float64), where=possible > 0)
        counted = possible > 0

        def group_rate(selector: np.ndarray) -> float:
            return _pct(self.absent[mask & selector].sum(), self.possible[mask & selector].sum())

        def group_pa(selector: np.ndarray) -> float:
            chosen = (cohort.phase == phase) & selector & (self.possible > 0)
            per_pupil = self.absent[chosen] / self.possible[chosen]
            return _pct((per_pupil >= 0.1).sum(), chosen.sum())

        days = cal.school_days
        weekday = np.array([d.weekday() for d in days], dtype=np.int8)
        day_absent = self.day_absent[phase]
        day_possible = self.day_possible[phase]

        def weekday_session(wd: int, session: int) -> float:
            chosen = weekday == wd
            return _pct(day_absent[chosen, session].sum(), day_possible[chosen, session].sum())

        def over_days(indices: list[int]) -> float:
            return _pct(day_absent[indices].sum(), day_possible[indices].sum())

        autumn = cal.terms[0]
        autumn_days = [i for i, d in enumerate(days) if autumn.contains(d)]
        before_ht = [i for i in autumn_days if days[i] < autumn.half_term_start][-5:]
        after_ht = [i for i in autumn_days if days[i] > autumn.half_term_end][:5]
        first_day = days[autumn_days[0]]
        next_monday = first_day + dt.timedelta(days=7 - first_day.weekday())
        first_week = [i for i in autumn_days if days[i] < next_monday]

        def term_rate(name: str) -> float:
            return over_days([i for i, d in enumerate(days) if cal.term_of(d) == name])

        spells = self.spell_lengths[phase]
        codes = self.code_counts[phase]
        total_possible = possible.sum()
        return PhaseStats(
            phase=PHASE_NAMES[phase],
            pupils=int(mask.sum()),
            sessions=int(codes.sum()),
            overall=_pct(absent.sum(), total_possible),
            authorised=_pct(self.authorised[mask].sum(), total_possible),
            unauthorised=_pct(self.unauthorised[mask].sum(), total_possible),
            persistent=_pct((rate[counted] >= 0.1).sum(), counted.sum()),
            severe=_pct((rate[counted] >= 0.5).sum(), counted.sum()),
            fsm=group_rate(cohort.fsm),
            not_fsm=group_rate(~cohort.fsm),
            sen_none=group_rate(cohort.sen == SEN_NONE),
            sen_support=group_rate(cohort.sen == SEN_SUPPORT),
            ehcp=group_rate(cohort.sen == SEN_EHCP),
            fsm_persistent=group_pa(cohort.fsm),
            not_fsm_persistent=group_pa(~cohort.fsm),
            wednesday_am=weekday_session(2, 0),
            wednesday_pm=weekday_session(2, 1),
            friday_am=weekday_session(4, 0),
            friday_pm=weekday_session(4, 1),
            present_code_share=_pct(codes[C.IS_PLAIN_PRESENT].sum(), codes.sum()),
            spells_2_to_4_share=_pct(spells[2:5].sum(), spells[1:].sum()),
            part_time_pupils=_pct(self.part_time[mask].sum(), mask.sum()),
            autumn_first_week=over_days(first_week),
            autumn_before_half_term=over_days(before_ht),
            autumn_after_half_term=over_days(after_ht),
            autumn_last_week=over_days(autumn_days[-5:]),
            autumn=term_rate("autumn"),
            spring=term_rate("spring"),
            summer=term_rate("summer"),
            illness=_pct(codes[C.CODE_INDEX["I"]], total_possible),
            code_counts={code: int(count) for code, count in zip(C.CODE_LIST, codes.tolist()) if count},
        )
