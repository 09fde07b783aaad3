"""Ground truth of a simulated cohort: who had which episode when, and the roster's groups.

`truth.csv` (written by the simulator) has one row per episode; `roster.csv` the pupils with
their SEN and free-school-meal status (used for the fairness audit only, never by the model).
Episode kinds fall into four groups, which is what evaluation scores them as:

  dips        a change the pastoral team should hear about: a concern inside the episode is right
  health      a long illness: health is not a dip (issue 13); `health_needs` is the right event,
              a concern is wrong
  one-off     one block of absence (an illness of one to three weeks, a holiday of one or two
              weeks, a bereavement): judged by what follows it; a concern is wrong
  other       no dip either (low but steady attendance, a part-time timetable, a suspension)
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

DIP_KINDS = ("avoidance", "family_crisis", "monday_friday", "young_carer", "recurrent_illness")
HEALTH_KINDS = ("long_illness",)
ONE_OFF_KINDS = ("illness_block", "term_time_holiday", "bereavement")
OTHER_KINDS = ("low_steady", "part_time", "suspension")
KNOWN_KINDS = DIP_KINDS + HEALTH_KINDS + ONE_OFF_KINDS + OTHER_KINDS


@dataclass(frozen=True)
class Episode:
    kind: str
    onset: dt.date
    recovery: dt.date | None  # the first school day back; None: not by the end of the period


@dataclass
class Truth:
    episodes: dict[str, list[Episode]]  # pupil -> episodes
    sen: dict[str, str]  # pupil -> none / sen_support / ehcp
    fsm: dict[str, bool]
    pupils: list[str]  # every pupil of the roster

    @classmethod
    def load(cls, truth_csv: Path, roster_csv: Path) -> Truth:
        episodes: dict[str, list[Episode]] = defaultdict(list)
        with Path(truth_csv).open(newline="") as handle:
            for row in csv.DictReader(handle):
                episodes[row["pupil_id"]].append(Episode(
                    row["kind"], dt.date.fromisoformat(row["onset_date"]),
                    dt.date.fromisoformat(row["recovery_date"]) if row["recovery_date"] else None))
        roster = Roster.load(roster_csv)
        return cls(dict(episodes), roster.sen, roster.fsm, roster.pupils)

    def kinds(self, pupil: str) -> set[str]:
        return {episode.kind for episode in self.episodes.get(pupil, ())}

    def has_dip(self, pupil: str, dip_kinds: tuple[str, ...] = DIP_KINDS) -> bool:
        return any(episode.kind in dip_kinds for episode in self.episodes.get(pupil, ()))


@dataclass
class Roster:
    """The roster's groups, for fairness only: pupil -> SEN level, pupil -> FSM, pupil -> school."""

    pupils: list[str]
    sen: dict[str, str]
    fsm: dict[str, bool]
    school: dict[str, str]

    @classmethod
    def load(cls, roster_csv: Path) -> Roster:
        pupils, sen, fsm, school = [], {}, {}, {}
        with Path(roster_csv).open(newline="") as handle:
            for row in csv.DictReader(handle):
                pupil = row["pupil_id"]
                pupils.append(pupil)
                sen[pupil] = row["sen"]
                fsm[pupil] = row["fsm"].strip().lower() == "true"
                school[pupil] = row["school_id"]
        return cls(pupils, sen, fsm, school)
