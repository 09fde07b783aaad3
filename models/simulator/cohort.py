"""The simulated pupils: schools, phases, year groups, SEN and free-school-meal status.

Demographics live in the roster only. They shape each pupil's absence propensity (to
reproduce the published gaps) but never appear in a register mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Phase = Literal["primary", "secondary", "mixed"]

PRIMARY, SECONDARY = 0, 1
PHASE_NAMES: tuple[str, str] = ("primary", "secondary")
SEN_NAMES: tuple[str, str, str] = ("none", "sen_support", "ehcp")
SEN_NONE, SEN_SUPPORT, SEN_EHCP = 0, 1, 2
# Year groups as numbers, reception as 0; written as "R" in the roster.
PRIMARY_YEARS = np.arange(0, 7, dtype=np.int8)
SECONDARY_YEARS = np.arange(7, 12, dtype=np.int8)

# National proportions (DfE "Special educational needs in England" and "Schools, pupils and
# their characteristics", 2024/25): about 25% of pupils eligible for free school meals,
# 13-14% on SEN support and 2.5-5% with an EHC plan in mainstream schools. SEN is more common
# among FSM pupils (roughly 1.6x), so SEN is drawn conditionally on FSM; the mixture keeps the
# overall shares on target.
FSM_SHARE = 0.25
SEN_SUPPORT_SHARE = {True: 0.190, False: 0.117}
EHCP_SHARE = {True: 0.045, False: 0.025}


@dataclass(frozen=True, slots=True)
class Cohort:
    """All pupils of all schools, sorted by school then pupil number (register order)."""

    school_ids: tuple[str, ...]
    school_phase: np.ndarray  # int8 per school: PRIMARY or SECONDARY
    school: np.ndarray  # int32 per pupil: index into school_ids
    pupil_ids: np.ndarray  # object (str) per pupil
    phase: np.ndarray  # int8 per pupil
    year_group: np.ndarray  # int8 per pupil, 0 = reception
    sen: np.ndarray  # int8 per pupil: SEN_NONE / SEN_SUPPORT / SEN_EHCP
    fsm: np.ndarray  # bool per pupil

    @property
    def size(self) -> int:
        return int(self.school.shape[0])

    def school_slices(self) -> list[slice]:
        """Contiguous pupil ranges of each school."""
        bounds = np.searchsorted(self.school, np.arange(len(self.school_ids) + 1, dtype=np.int32))
        return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    def roster_csv_lines(self) -> list[str]:
        years = np.array(["R"] + [str(y) for y in range(1, 12)], dtype=object)
        phases = np.array(PHASE_NAMES, dtype=object)
        sens = np.array(SEN_NAMES, dtype=object)
        fsms = np.array(["false", "true"], dtype=object)
        schools = np.array(self.school_ids, dtype=object)
        rows = (
            schools[self.school] + "," + self.pupil_ids + "," + phases[self.phase] + ","
            + years[self.year_group] + "," + sens[self.sen] + "," + fsms[self.fsm.astype(np.int8)] + "\n"
        )
        return rows.tolist()


ROSTER_HEADER = "school_id,pupil_id,phase,year_group,sen,fsm\n"


def school_phases(n_schools: int, phase: Phase) -> np.ndarray:
    """Phase of each school; `mixed` alternates so any two adjacent schools cover both."""
    if phase == "primary":
        return np.zeros(n_schools, dtype=np.int8)
    if phase == "secondary":
        return np.ones(n_schools, dtype=np.int8)
    if phase == "mixed":
        return (np.arange(n_schools) % 2).astype(np.int8)
    raise ValueError(f"unknown phase {phase!r}")


def school_id(index: int, n_schools: int) -> str:
    return f"SCH{index + 1:0{max(3, len(str(n_schools)))}d}"


def build_cohort(n_schools: int, pupils_per_school: int, phase: Phase, rng: np.random.Generator) -> Cohort:
    if n_schools < 1 or pupils_per_school < 1:
        raise ValueError("need at least one school and one pupil per school")
    phases = school_phases(n_schools, phase)
    school_ids = tuple(school_id(i, n_schools) for i in range(n_schools))
    school = np.repeat(np.arange(n_schools, dtype=np.int32), pupils_per_school)
    pupil_phase = phases[school]
    n = school.shape[0]

    width = max(5, len(str(pupils_per_school)))
    numbers = np.tile(np.arange(1, pupils_per_school + 1), n_schools)
    pupil_ids = np.array(
        [f"{school_ids[s]}-P{k:0{width}d}" for s, k in zip(school.tolist(), numbers.tolist())], dtype=object
    )

    year_group = np.where(
        pupil_phase == PRIMARY,
        rng.choice(PRIMARY_YEARS, size=n),
        rng.choice(SECONDARY_YEARS, size=n),
    ).astype(np.int8)
    # Sort each school's pupils by year group so register blocks read like class lists.
    order = np.lexsort((numbers, year_group, school))
    year_group = year_group[order]

    fsm = rng.random(n) < FSM_SHARE
    draw = rng.random(n)
    ehcp_p = np.where(fsm, EHCP_SHARE[True], EHCP_SHARE[False])
    support_p = np.where(fsm, SEN_SUPPORT_SHARE[True], SEN_SUPPORT_SHARE[False])
    sen = np.where(draw < ehcp_p, SEN_EHCP, np.where(draw < ehcp_p + support_p, SEN_SUPPORT, SEN_NONE)).astype(np.int8)

    return Cohort(
        school_ids=school_ids,
        school_phase=phases,
        school=school,
        pupil_ids=pupil_ids,
        phase=pupil_phase.astype(np.int8),
        year_group=year_group,
        sen=sen,
        fsm=fsm.astype(bool),
    )
