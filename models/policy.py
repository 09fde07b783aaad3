"""When a risk score becomes an intervention: what the register must show, tiers, cool-downs.

Three kinds of event (`schemas.events.InterventionKind`):

* `concern`: the calibrated score is at or above the entry threshold and nothing on the
  register holds it back (`concern_hold`). Raised once; escalated only when the tier rises and
  a week has passed; after an `improving` event, not raised again for the cool-down.
* `improving`: a flagged pupil's score has stayed below a lower exit threshold for several
  school days while they attend at least 90% of their last 10 sessions.
* `health_needs`: illness or medical absence (I, M) this academic year reaches 15 school days
  (30 sessions), consecutive or cumulative: the point at which the local authority's duty to
  arrange education for children with health needs applies. Once a year, whatever the score.

What holds a concern back, in the order it is checked (each is a sentence a head of year
would say):

0. `DAY_NOT_OVER`: the afternoon register of the pupil's latest school day is not in yet. A
   concern is raised, or raised to a higher tier, once the day's registers are: the model and
   its entry threshold were chosen on whole school days, and a morning's absence may yet be an
   appointment, a late arrival or an illness the afternoon explains.
1. `HEALTH`: the pupil's current absence is all illness or medical appointments, or their
   absence over the last 40 sessions is an illness: all of it (but two sessions) illness or
   medical, with a spell of a week or more (a long illness with a day in school, a phased
   return). Health is not a dip, however long it lasts; the health-needs event covers a long
   illness. Illness in short spells only (every Monday) is a pattern, not held by this rule.
2. `KNOWN_REASON`: the current absence is a known holiday or leave the school authorised
   (G, C, E, ...) of at most two weeks: wait and see what follows.
3. `NOTHING_RECENT`: the pupil attended 90% or more of their last 20 possible sessions,
   leaving out sessions the school arranged itself (a part-time timetable, a suspension):
   there is nothing on the register to talk about yet (two absences in twenty is not a dip).
4. `ONE_BLOCK`: the absence of the last 40 sessions is one spell (a block of two days or more with
   at most two other sessions off, or the window's only absence), and either the pupil is back and
   their attendance since coming back is at their own usual level, or the spell is still going on
   and has lasted at most a week (its reason may not be in the register yet: N is often amended to
   I or G by noon). A week of flu or a holiday is judged by what follows it. Separate days off
   (illness on two Mondays) are not one spell and are not held by this rule; an unexplained
   absence longer than a week is a concern (at tier 2 or 3, below).
5. `ALREADY_SEVERE`: the pupil's own level this year is under 50%: they have missed half their
   sessions or more, which makes them severely absent (the DfE's term), and the school's
   attendance lead already works with every such pupil. A concern is an early warning of a
   change; for them it would tell nobody anything new. (On the training cohort, none of the 62
   concerns raised for such pupils fell in a dip: their long spells are their pattern.) The label
   leaves their rows unlabelled, so training and the backtest agree (`models.labels`).

Tiers follow the register as well as the score (`register_tier`): a current run of unexplained
absence of a week (10 sessions) or more, or under 50% attendance over the last two weeks, is at
least tier 2 ("a clear dip"); a run of two weeks (20 sessions) or more, or under 50% over the last
four weeks, is tier 3 ("a sharp or sustained dip"); a flagged pupil is escalated to the register's
tier whatever the score. An unexplained run longer than a school week (12 sessions, six school
days) from a pupil who usually attends (own level this year at or above 90%, as an alert shows it:
`usually_attends`) is a concern whatever the score (`concern_tier`): nobody has heard from them,
and it is no longer one holiday week nobody reported, however rarely such runs led to a dip in the
training data. A run of one week or less is still the score's call: at the time it cannot be told
from that holiday week, one block of absence that is judged by what follows it, and the school's
first-day calling is already asking why. A day or two off on the same weekday on three days in the
last 40 sessions (off three Mondays in four weeks) is also a concern whatever the score, whatever
the reason but leave the school authorised or arranged: repeated short absences around a weekday
are a recognised sign of emotionally based school avoidance, worth a wellbeing conversation, and
the score is slow to see one day a week. From a pupil already under the 90% line, a week away or a
pattern of days off can be how their year goes, and the score decides; but an unexplained run of
two weeks (20 sessions) is a concern from any pupil the holds do not keep back, whatever the
score, at tier 3: a child nobody has heard from for a fortnight needs someone to get in touch,
however seldom such runs turn out to be a dip.

`policy_inputs` is the one place the policy's inputs are computed from window counts; the
engine, training's threshold search and evaluation all call it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, Field, model_validator

from models.definitions import (
    BLOCK_MIN_SESSIONS,
    DROP,
    FLOOR,
    ILLNESS_SPELL_SESSIONS,
    OTHER_ABSENCES,
    SEVERE_ABSENCE_LEVEL,
    UNEXPLAINED_FORTNIGHT_SESSIONS,
    UNEXPLAINED_PAST_A_WEEK_SESSIONS,
    UNEXPLAINED_WEEK_SESSIONS,
    WEEKDAY_PATTERN_DAYS,
)
from models.rates import rate
from models.school_year import academic_year
from schemas.events import HEALTH_NEEDS_TIER, InterventionKind

# flagged, tier, last_alert, low_days, last_low, alert_rate_pct, plan, reason[, health_needs_year]
_POLICY = {2: struct.Struct("<BBiBiBBB"), 3: struct.Struct("<BBiBiBBBH")}
_CURRENT = 3
NO_RATE = 255
NO_REASON = 255

class PolicyConfig(BaseModel):
    """Thresholds on the calibrated probability that attendance is dipping, and the register rules."""

    enter_score: float = Field(0.5, gt=0, lt=1, description="Raise a concern at or above this score.")
    exit_score: float = Field(0.25, gt=0, lt=1, description="Count a day towards recovery below this score.")
    tier2_score: float = Field(0.7, gt=0, lt=1)
    tier3_score: float = Field(0.85, gt=0, lt=1)
    min_possible_sessions: int = Field(
        40, ge=1, description="Possible sessions this year before a concern: the pupil's own level (20) and the "
        "last 20 to compare with it. A dip is a change; before that there is nothing to compare.")
    cooldown_days: int = Field(21, ge=0, description="Calendar days after an alert before a new concern.")
    escalation_gap_days: int = Field(7, ge=0, description="Calendar days after an alert before an escalation.")
    recovery_days: int = Field(5, ge=1, description="School days below the exit score before `improving`.")
    explained_absence_grace_sessions: int = Field(
        20, ge=0,
        description="Hold back a concern while the pupil's current absence is a known holiday or authorised leave "
        "(G, C, E, ...) of at most this many sessions (two weeks). Illness is held however long it lasts.",
    )
    recovery_min_rate: float = Field(
        0.9, gt=0, le=1,
        description="Share of the last 10 possible sessions attended before a recovery counts: a low score "
        "alone can mean the pupil's low attendance has become their new normal, which is not recovery.",
    )
    concern_below_rate: float = Field(
        FLOOR, gt=0, le=1,
        description="A concern needs attendance over the last 20 possible sessions (sessions the school "
        "arranged left out) below this: 18 of 20 is not a dip.",
    )
    one_block_ongoing_sessions: int = Field(
        10, ge=0, description="Wait out one block still going on for at most this many sessions (a week).")
    one_block_other_absences: int = Field(
        OTHER_ABSENCES, ge=0, description="Absences outside the longest spell of the last 40 sessions for that spell to "
        "still be the window's one block.")
    usual_level_margin: float = Field(
        DROP, ge=0, lt=1, description="Back at their usual level: attendance since the return is no more "
        "than this below the pupil's earlier rate this year (the label's 10-point drop).")
    illness_spell_sessions: int = Field(
        ILLNESS_SPELL_SESSIONS, ge=1, description="A spell of illness this long (a week) makes a window whose absence is all illness "
        "a health matter, not a pattern.")
    health_needs_sessions: int = Field(
        30, ge=1, description="Illness or medical sessions this year that publish `health_needs` (15 days).")
    weekday_pattern_days: int = Field(
        WEEKDAY_PATTERN_DAYS, ge=1, description="Days off on one weekday in the last 40 possible sessions (a day or two "
        "at a time, not leave) that make a concern due whatever the score, for a pupil who usually attends.")
    tier2_unexplained_run: int = Field(
        UNEXPLAINED_WEEK_SESSIONS, ge=1, description="Unexplained sessions in a row: at least tier 2.")
    usual_unexplained_run: int = Field(
        UNEXPLAINED_PAST_A_WEEK_SESSIONS, ge=1, description="Unexplained sessions in a row that make a concern due "
        "whatever the score, for a pupil who usually attends (longer than one holiday week nobody reported).")
    tier3_unexplained_run: int = Field(
        UNEXPLAINED_FORTNIGHT_SESSIONS, ge=1, description="Unexplained sessions in a row: tier 3, and a concern "
        "whatever the score from any pupil the holds do not keep back.")
    severe_rate: float = Field(0.5, gt=0, le=1, description="Attendance under this over 20 sessions: tier 2 "
                               "at least; over the last 40 sessions: tier 3.")
    severe_absence_level: float = Field(
        SEVERE_ABSENCE_LEVEL, ge=0, le=1, description="No concern for a pupil whose own earlier level this "
        "year is under this: missing half their sessions or more, they are severely absent and already the "
        "attendance lead's.")

    @model_validator(mode="after")
    def _ordered(self) -> PolicyConfig:
        if not self.exit_score < self.enter_score <= self.tier2_score <= self.tier3_score:
            raise ValueError("need exit_score < enter_score <= tier2_score <= tier3_score")
        if self.tier2_unexplained_run > self.tier3_unexplained_run:
            raise ValueError("need tier2_unexplained_run <= tier3_unexplained_run")
        return self

    def tier_for(self, score: float) -> int:
        if score >= self.tier3_score:
            return 3
        if score >= self.tier2_score:
            return 2
        return 1 if score >= self.enter_score else 0


def thresholds(base: PolicyConfig, enter: float) -> PolicyConfig:
    """`base` with this entry threshold: tiers spaced above it, exit well below it (hysteresis).
    Training's threshold choice and evaluation's diagnostic sweep both build policies with it."""
    tier2 = enter + (1 - enter) * 0.4
    tier3 = enter + (1 - enter) * 0.75
    return base.model_copy(update={"enter_score": enter, "exit_score": enter * 0.5,
                                   "tier2_score": tier2, "tier3_score": tier3})


class Hold(StrEnum):
    """Why the register holds a concern back (see the module docstring)."""

    DAY_NOT_OVER = "day_not_over"
    HEALTH = "health"
    KNOWN_REASON = "known_reason"
    NOTHING_RECENT = "nothing_recent"
    ONE_BLOCK = "one_block"
    ALREADY_SEVERE = "already_severe"


# -- inputs -----------------------------------------------------------------------------------
# The window counts (schemas.events.WindowSummary fields) the policy reads.
POLICY_COUNTS: tuple[str, ...] = (
    "possible_ytd", "possible_10", "attended_10", "possible_20", "attended_20", "possible_40", "attended_40",
    "earlier_possible", "earlier_attended", "current_absence_run", "current_run_explained", "current_run_leave",
    "longest_absence_run_40", "health_40", "health_absence_ytd", "arranged_20", "possible_since_block", "attended_since_block",
    "current_run_health", "same_weekday_days_off_40",
)


class PolicyRow(NamedTuple):
    """The policy's inputs for one mark (one row of `PolicyInputs`). A named tuple, not a frozen
    dataclass: as immutable, and a third of the cost to build (the columnar replay builds one
    for every row a rule reads)."""

    day: int  # ordinal of the latest school day seen for the pupil
    year: int  # its academic year
    possible_ytd: int
    recent_rate: float  # attended / possible over the last 20 possible sessions (raw)
    short_rate: float  # the same over the last 10
    unarranged_rate: float  # last 20, sessions the school arranged left out (raw)
    rate_20: float  # raw, for the register tiers
    rate_40: float
    possible_40: int
    current_run: int
    health_absence: bool  # the current run, or the window's absence, is an illness (HEALTH)
    known_run: int  # the current run's length when all of it has a known reason, else 0
    unexplained_run: int  # sessions of the current run with no known reason
    one_block: bool  # the window's absence is one block, over and back at the usual level, or young
    health_absence_ytd: int
    usual_rate: float  # the pupil's own earlier level this year (shrunk towards a typical pupil)
    earlier_rate: float  # the same level unshrunk, as an alert shows it (1.0 before any session)
    same_weekday_days: int  # days off on one weekday in the last 40 sessions, a day or two at a time
    day_end: bool = True  # the afternoon register of `day` is in (training and the day-end views: always)


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    """`PolicyRow` columns for a batch of marks (numpy arrays, one element a mark)."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["day"])

    def row(self, i: int) -> PolicyRow:
        return PolicyRow(**{name: column[i].item() for name, column in self.columns.items()})

    def rows(self) -> list[PolicyRow]:
        lists = {name: column.tolist() for name, column in self.columns.items()}
        names = list(lists)
        return [PolicyRow(**dict(zip(names, values))) for values in zip(*lists.values())]


def _raw_rate(attended: np.ndarray, possible: np.ndarray) -> np.ndarray:
    return np.divide(attended, possible, out=np.ones(len(possible), dtype=np.float64), where=possible > 0)


def unexplained_sessions(run, explained, leave):  # scalars or numpy arrays
    """Sessions of the current absence with no reason given: neither explained nor leave."""
    return np.maximum(run - explained - leave, 0)


def policy_inputs(counts: Mapping[str, np.ndarray], day: np.ndarray, config: PolicyConfig,
                  day_end: np.ndarray | None = None) -> PolicyInputs:
    """The policy's inputs from window counts (the `POLICY_COUNTS` columns), each row's day and
    whether that day's afternoon register is in (None: every row is a day end)."""
    c = {name: np.asarray(counts[name], dtype=np.int64) for name in POLICY_COUNTS}
    day = np.asarray(day, dtype=np.int64)
    day_end = np.ones(len(day), dtype=bool) if day_end is None else np.asarray(day_end, dtype=bool)
    run = c["current_absence_run"]
    explained = c["current_run_explained"] + c["current_run_leave"]
    absences_40 = c["possible_40"] - c["attended_40"]
    baseline = rate(c["earlier_attended"], c["earlier_possible"])
    since_block = rate(c["attended_since_block"], c["possible_since_block"])
    longest = c["longest_absence_run_40"]
    # One spell: a block of two days or more with at most a couple of other sessions off, or the
    # window's only absence (a day off is not a block: two separate days off are not "one spell").
    single = (longest > 0) & (((longest >= BLOCK_MIN_SESSIONS) & (absences_40 - longest <= config.one_block_other_absences))
                              | (absences_40 == longest))
    back = (run == 0) & (since_block >= baseline - config.usual_level_margin)
    young = (run > 0) & (run == longest) & (run <= config.one_block_ongoing_sessions)
    one_block = single & (back | young)
    unarranged_possible = c["possible_20"] - c["arranged_20"]
    illness_window = ((c["health_40"] > 0) & (absences_40 - c["health_40"] <= config.one_block_other_absences)
                      & (c["longest_absence_run_40"] >= config.illness_spell_sessions))
    # A batch spans few distinct days: each day's academic year is worked out once.
    distinct, position = np.unique(day, return_inverse=True)
    year = np.array([academic_year(d) for d in distinct.tolist()], dtype=np.int64)[position.reshape(-1)]
    return PolicyInputs({
        "day": day,
        "year": year,
        "possible_ytd": c["possible_ytd"],
        "recent_rate": _raw_rate(c["attended_20"], c["possible_20"]),
        "short_rate": _raw_rate(c["attended_10"], c["possible_10"]),
        "unarranged_rate": _raw_rate(c["attended_20"], unarranged_possible),
        "rate_20": _raw_rate(c["attended_20"], c["possible_20"]),
        "rate_40": _raw_rate(c["attended_40"], c["possible_40"]),
        "possible_40": c["possible_40"],
        "current_run": run,
        "health_absence": ((run > 0) & (c["current_run_health"] >= run)) | illness_window,
        "known_run": np.where((run > 0) & (explained >= run), run, 0),
        "unexplained_run": unexplained_sessions(run, c["current_run_explained"], c["current_run_leave"]),
        "one_block": one_block,
        "health_absence_ytd": c["health_absence_ytd"],
        "usual_rate": baseline,
        "earlier_rate": _raw_rate(c["earlier_attended"], c["earlier_possible"]),
        "same_weekday_days": c["same_weekday_days_off_40"],
        "day_end": day_end,
    })


# -- rules ----------------------------------------------------------------------------------
def usually_attends(config: PolicyConfig, usual_rate, earlier_rate):  # scalars or numpy arrays
    """Whether the pupil's own earlier level is at or above the 90% line both as an alert shows it
    and shrunk towards a typical pupil: an alert must never say "down from 89%" about a rule for a
    pupil who usually attends."""
    return np.minimum(usual_rate, earlier_rate) >= config.concern_below_rate


def concern_hold(config: PolicyConfig, row: PolicyRow) -> Hold | None:
    """What on the register holds a concern back for this mark, or None."""
    if not row.day_end:
        return Hold.DAY_NOT_OVER
    if row.health_absence:
        return Hold.HEALTH
    if 0 < row.known_run <= config.explained_absence_grace_sessions:
        return Hold.KNOWN_REASON
    if row.unarranged_rate >= config.concern_below_rate:
        return Hold.NOTHING_RECENT
    if row.one_block:
        return Hold.ONE_BLOCK
    if row.usual_rate < config.severe_absence_level:
        return Hold.ALREADY_SEVERE
    return None


def register_tier(config: PolicyConfig, row: PolicyRow) -> int:
    """The lowest tier the register allows for a concern, whatever the score (module docstring)."""
    four_weeks = row.possible_40 >= 40
    if row.unexplained_run >= config.tier3_unexplained_run or (four_weeks and row.rate_40 < config.severe_rate):
        return 3
    if row.unexplained_run >= config.tier2_unexplained_run or row.rate_20 < config.severe_rate:
        return 2
    return 1


def concern_tier(config: PolicyConfig, score: float, row: PolicyRow) -> int:
    """The tier of a concern due at this mark (0: none): the higher of the score's tier and the
    register's. From a pupil who usually attends (their own level at or above the 90% line), an
    unexplained run longer than a school week, or a day or two off on the same weekday three times
    in four weeks, is due whatever the score; for a pupil already persistently absent such absences
    can be their pattern, and the score decides. An unexplained run of two weeks is due from any
    pupil (but one the holds keep back): nobody has heard from them for a fortnight."""
    tier = config.tier_for(score)
    usual = usually_attends(config, row.usual_rate, row.earlier_rate)
    silent = row.unexplained_run >= config.usual_unexplained_run
    unseen = row.unexplained_run >= config.tier3_unexplained_run
    weekday_pattern = row.same_weekday_days >= config.weekday_pattern_days
    if not tier and not (unseen or (usual and (silent or weekday_pattern))):
        return 0
    return max(tier, register_tier(config, row))


@dataclass(frozen=True, slots=True)
class Decision:
    kind: InterventionKind
    tier: int
    escalation: bool = False
    rate_at_alert: float | None = None  # recent attendance when the concern was raised, for `improving`


class PolicyState:
    """What the policy remembers about one pupil; small, and stored with the pupil's state."""

    __slots__ = ("flagged", "tier", "last_alert", "low_days", "last_low", "alert_rate_pct", "plan_open",
                 "alert_reason", "health_needs_year")

    def __init__(self) -> None:
        self.flagged = False
        self.tier = 0
        self.last_alert = 0  # ordinal day of the last event; 0 = never
        self.low_days = 0
        self.last_low = 0
        self.alert_rate_pct = NO_RATE
        self.plan_open = False  # pastoral staff recorded a support plan that is still open
        self.alert_reason = NO_REASON  # index of the main reason of the last concern (its "pattern")
        self.health_needs_year = 0  # academic year of the last health-needs event; 0 = never

    def to_bytes(self) -> bytes:
        return _POLICY[_CURRENT].pack(self.flagged, self.tier, self.last_alert, self.low_days, self.last_low,
                                      self.alert_rate_pct, self.plan_open, self.alert_reason, self.health_needs_year)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int, *, version: int = _CURRENT) -> tuple[PolicyState, int]:
        """Decode at `offset`; `version` is the pupil-state format the record was written in."""
        layout = _POLICY[3 if version >= 3 else 2]
        state = cls()
        values = layout.unpack_from(data, offset)
        (flagged, state.tier, state.last_alert, state.low_days, state.last_low, state.alert_rate_pct, plan_open,
         state.alert_reason) = values[:8]
        state.health_needs_year = values[8] if len(values) > 8 else 0
        state.flagged, state.plan_open = bool(flagged), bool(plan_open)
        return state, offset + layout.size

    def start_plan(self) -> None:
        """A support plan is open: the pupil counts as flagged (so is not raised again) until they recover."""
        self.plan_open = True
        self.flagged = True
        self.tier = max(self.tier, 1)

    def close_plan(self) -> None:
        self.plan_open = False


def can_raise(state: PolicyState, config: PolicyConfig, row: PolicyRow) -> bool:
    """Whether any score could make `decide` raise a concern for an unflagged pupil at this mark.
    False means the decision does not depend on the score (the engine need not score the row)."""
    if row.possible_ytd < config.min_possible_sessions:
        return False
    if state.last_alert and row.day - state.last_alert < config.cooldown_days:
        return False
    return concern_hold(config, row) is None


def decide(state: PolicyState, config: PolicyConfig, score: float, row: PolicyRow) -> Decision | None:
    """Update the pupil's policy state for one scored mark; the `concern` or `improving` to publish.

    An unflagged pupil's state changes only when a concern is raised, so for a row where
    `can_raise` is False this returns None and changes nothing, whatever the score.
    """
    if row.possible_ytd < config.min_possible_sessions:
        return None
    if not state.flagged:
        tier = concern_tier(config, score, row)
        if tier and can_raise(state, config, row):
            state.flagged, state.tier, state.last_alert = True, tier, row.day
            state.low_days, state.last_low = 0, 0
            state.alert_rate_pct = min(round(row.recent_rate * 100), 100)
            return Decision(InterventionKind.CONCERN, tier)
        return None
    # A flagged pupil climbs to the register's tier whatever the score: as their lower attendance
    # becomes their own earlier level the score can slide under the entry while the register
    # shows the dip sustained (under half of four weeks is tier 3 however the model now sees it).
    # (For a flagged pupil this is `concern_tier` with the register's tier always counted.)
    climb = max(config.tier_for(score), register_tier(config, row))
    if (climb > state.tier and row.day - state.last_alert >= config.escalation_gap_days
            and concern_hold(config, row) is None):
        state.tier, state.last_alert, state.low_days = climb, row.day, 0
        return Decision(InterventionKind.CONCERN, climb, escalation=True)
    if score >= config.exit_score or row.short_rate < config.recovery_min_rate:
        state.low_days = 0
        return None
    if row.day != state.last_low:
        state.low_days, state.last_low = state.low_days + 1, row.day
    if state.low_days < config.recovery_days:
        return None
    rate_at_alert = None if state.alert_rate_pct == NO_RATE else state.alert_rate_pct / 100
    tier_was = state.tier
    state.flagged, state.tier, state.last_alert, state.low_days = False, 0, row.day, 0
    state.alert_rate_pct = NO_RATE
    return Decision(InterventionKind.IMPROVING, tier_was, rate_at_alert=rate_at_alert)


def health_needs(state: PolicyState, config: PolicyConfig, row: PolicyRow) -> Decision | None:
    """`health_needs` the first time this academic year illness reaches `health_needs_sessions`."""
    if row.health_absence_ytd < config.health_needs_sessions or state.health_needs_year == row.year:
        return None
    state.health_needs_year = row.year
    return Decision(InterventionKind.HEALTH_NEEDS, int(HEALTH_NEEDS_TIER))
