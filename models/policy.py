"""When a risk score becomes an intervention: thresholds with hysteresis, tiers and cool-downs.

A pupil is raised once when their score crosses the entry threshold, escalated only when
the tier rises and a week has passed, and closed with an `improving` event once their score
has stayed below a lower exit threshold for several school days. After an alert the pupil
is not raised again for the cool-down, so nobody gets an alert every day.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

_POLICY = struct.Struct("<BBiBiBBB")  # flagged, tier, last_alert, low_days, last_low, alert_rate_pct, plan, reason
NO_RATE = 255
NO_REASON = 255


class PolicyConfig(BaseModel):
    """Thresholds on the calibrated probability that attendance is dipping."""

    enter_score: float = Field(0.5, gt=0, lt=1, description="Raise a concern at or above this score.")
    exit_score: float = Field(0.25, gt=0, lt=1, description="Count a day towards recovery below this score.")
    tier2_score: float = Field(0.7, gt=0, lt=1)
    tier3_score: float = Field(0.85, gt=0, lt=1)
    min_possible_sessions: int = Field(20, ge=1, description="Evidence needed this year before any alert.")
    cooldown_days: int = Field(21, ge=0, description="Calendar days after an alert before a new concern.")
    escalation_gap_days: int = Field(7, ge=0, description="Calendar days after an alert before an escalation.")
    recovery_days: int = Field(5, ge=1, description="School days below the exit score before `improving`.")
    explained_absence_grace_sessions: int = Field(
        10, ge=0,
        description="Hold back a new concern while the pupil's current absence is a known illness, appointment "
        "or holiday (I, M, G) of at most this many sessions: a week of flu or one holiday is not a dip. If it "
        "goes on longer, the concern is raised then.",
    )
    recovery_min_rate: float = Field(
        0.9, gt=0, le=1,
        description="Share of the last 10 possible sessions attended before a recovery counts: a low score "
        "alone can mean the pupil's low attendance has become their new normal, which is not recovery.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PolicyConfig:
        if not self.exit_score < self.enter_score <= self.tier2_score <= self.tier3_score:
            raise ValueError("need exit_score < enter_score <= tier2_score <= tier3_score")
        return self

    def tier_for(self, score: float) -> int:
        if score >= self.tier3_score:
            return 3
        if score >= self.tier2_score:
            return 2
        return 1 if score >= self.enter_score else 0


class DecisionKind(StrEnum):
    CONCERN = "concern"
    IMPROVING = "improving"


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    tier: int
    escalation: bool = False
    rate_at_alert: float | None = None  # recent attendance when the concern was raised, for `improving`


class PolicyState:
    """What the policy remembers about one pupil; small, and stored with the pupil's state."""

    __slots__ = ("flagged", "tier", "last_alert", "low_days", "last_low", "alert_rate_pct", "plan_open",
                 "alert_reason")

    def __init__(self) -> None:
        self.flagged = False
        self.tier = 0
        self.last_alert = 0  # ordinal day of the last event; 0 = never
        self.low_days = 0
        self.last_low = 0
        self.alert_rate_pct = NO_RATE
        self.plan_open = False  # pastoral staff recorded a support plan that is still open
        self.alert_reason = NO_REASON  # index of the main reason of the last concern (its "pattern")

    def to_bytes(self) -> bytes:
        return _POLICY.pack(self.flagged, self.tier, self.last_alert, self.low_days, self.last_low,
                            self.alert_rate_pct, self.plan_open, self.alert_reason)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int) -> tuple[PolicyState, int]:
        state = cls()
        (flagged, state.tier, state.last_alert, state.low_days, state.last_low, state.alert_rate_pct, plan_open,
         state.alert_reason) = _POLICY.unpack_from(data, offset)
        state.flagged, state.plan_open = bool(flagged), bool(plan_open)
        return state, offset + _POLICY.size

    def start_plan(self) -> None:
        """A support plan is open: the pupil counts as flagged (so is not raised again) until they recover."""
        self.plan_open = True
        self.flagged = True
        self.tier = max(self.tier, 1)

    def close_plan(self) -> None:
        self.plan_open = False


def decide(
    state: PolicyState, config: PolicyConfig, score: float, *, day: int, possible_sessions: int,
    recent_rate: float, short_rate: float, explained_run: int = 0,
) -> Decision | None:
    """Update the pupil's policy state for one scored mark; the event to publish, if any.

    `day` is the ordinal of the latest school day seen for the pupil, so a late amendment of an
    old session cannot move the policy's clock backwards. `recent_rate` is attendance over the
    last 20 possible sessions (remembered at an alert), `short_rate` over the last 10.
    `explained_run` is the length of the current absence run when every session of it is a
    known illness, appointment or holiday, else 0.
    """
    if possible_sessions < config.min_possible_sessions:
        return None
    tier = config.tier_for(score)
    if not state.flagged:
        waiting_it_out = 0 < explained_run <= config.explained_absence_grace_sessions
        if tier and not waiting_it_out and (state.last_alert == 0 or day - state.last_alert >= config.cooldown_days):
            state.flagged, state.tier, state.last_alert = True, tier, day
            state.low_days, state.last_low = 0, 0
            state.alert_rate_pct = min(round(recent_rate * 100), 100)
            return Decision(DecisionKind.CONCERN, tier)
        return None
    if tier > state.tier and day - state.last_alert >= config.escalation_gap_days:
        state.tier, state.last_alert, state.low_days = tier, day, 0
        return Decision(DecisionKind.CONCERN, tier, escalation=True)
    if score >= config.exit_score or short_rate < config.recovery_min_rate:
        state.low_days = 0
        return None
    if day != state.last_low:
        state.low_days, state.last_low = state.low_days + 1, day
    if state.low_days < config.recovery_days:
        return None
    rate_at_alert = None if state.alert_rate_pct == NO_RATE else state.alert_rate_pct / 100
    tier_was = state.tier
    state.flagged, state.tier, state.last_alert, state.low_days = False, 0, day, 0
    state.alert_rate_pct = NO_RATE
    return Decision(DecisionKind.IMPROVING, tier_was, rate_at_alert=rate_at_alert)


def explained_runs(current_run, current_run_explained):
    """The current absence run's length where all of it is illness, appointments or holiday, else 0."""
    return current_run * (current_run == current_run_explained)
