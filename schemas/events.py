"""Contracts of what Reconnect publishes: supportive intervention events and dead letters.

The vocabulary of suggested actions is closed: only supportive, relational steps exist in it,
so no event can express an enforcement step.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import IntEnum, StrEnum

from pydantic import BaseModel, ConfigDict, Field

EVENT_SCHEMA_VERSION = 1
# Fixed namespace: the same decision always gets the same id, across replays and redeliveries.
EVENT_NAMESPACE = uuid.UUID("6f1f2c4e-9d1b-4f39-8b8e-2a7f0c9e5d11")


class InterventionKind(StrEnum):
    CONCERN = "concern"  # raised, or escalated to a higher tier
    IMPROVING = "improving"  # a flagged pupil's attendance has recovered
    # Illness absence has reached 15 school days this year: the point at which the local
    # authority's duty to arrange education for children with health needs applies.
    HEALTH_NEEDS = "health_needs"


class Tier(IntEnum):
    """How much support the pattern suggests, not how much trouble anyone is in."""

    EARLY_SIGNS = 1
    CLEAR_DIP = 2
    SUSTAINED_DIP = 3


TIER_TEXT = {
    Tier.EARLY_SIGNS: "early signs: a light-touch check-in",
    Tier.CLEAR_DIP: "a clear dip: a planned conversation with the pupil and family",
    Tier.SUSTAINED_DIP: "a sharp or sustained dip: a coordinated support conversation",
}
# A `health_needs` event is not about a dip: it always carries this tier and this text.
HEALTH_NEEDS_TIER = Tier.CLEAR_DIP
HEALTH_NEEDS_TIER_TEXT = ("health needs: 15 school days of illness this year; plan the pupil's education and "
                          "health support with the family, the school nurse and the local authority")


def tier_text(kind: InterventionKind, tier: Tier) -> str:
    """The words shown beside an event's tier: what the tier means for this kind of event."""
    return HEALTH_NEEDS_TIER_TEXT if kind is InterventionKind.HEALTH_NEEDS else TIER_TEXT[tier]


class ReasonCode(StrEnum):
    RECENT_DROP = "recent_drop"
    LOW_RECENT_ATTENDANCE = "low_recent_attendance"
    CONSECUTIVE_ABSENCE = "consecutive_absence"
    REPEATED_SPELLS = "repeated_spells"
    MONDAY_FRIDAY_PATTERN = "monday_friday_pattern"
    LATE_MORNINGS = "late_mornings"
    MISSED_MORNINGS = "missed_mornings"
    HEALTH_ABSENCE = "health_absence"
    UNEXPLAINED_ABSENCE = "unexplained_absence"
    NO_RECENT_FULL_WEEK = "no_recent_full_week"
    LOW_YEAR_TO_DATE = "low_year_to_date"
    RECOVERING = "recovering"
    # Illness that comes back in short spells (e.g. most Mondays): a wellbeing pattern, not a medical one.
    REPEATED_ILLNESS = "repeated_illness"
    # Illness absence this year has reached 15 school days (the `health_needs` event).
    EXTENDED_ILLNESS = "extended_illness"
    # A day or two off on the same weekday, week after week (any reason but leave the school
    # authorised or arranged): a pattern worth a wellbeing conversation.
    SAME_WEEKDAY_PATTERN = "same_weekday_pattern"


class SupportAction(StrEnum):
    """The closed vocabulary of suggested next steps. Every one of them is supportive."""

    CHECK_IN_CONVERSATION = "check_in_conversation"
    CALL_HOME_TO_LISTEN = "call_home_to_listen"
    WELLBEING_CHECK_IN = "wellbeing_check_in"
    YOUNG_CARER_CONVERSATION = "young_carer_conversation"
    SCHOOL_NURSE_HEALTH_PLAN = "school_nurse_health_plan"
    SENCO_REVIEW = "senco_review"
    EARLY_HELP_CONVERSATION = "early_help_conversation"
    RECOGNISE_PROGRESS = "recognise_progress"
    WORK_SENT_HOME = "work_sent_home"
    HEALTH_NEEDS_EDUCATION_CONVERSATION = "health_needs_education_conversation"


ACTION_TEXT = {
    SupportAction.CHECK_IN_CONVERSATION: "a short, friendly check-in with the pupil by someone they trust",
    SupportAction.CALL_HOME_TO_LISTEN: "a call home to listen: ask how things are and what would help",
    SupportAction.WELLBEING_CHECK_IN: "a wellbeing check-in about how school feels, above all on the days they tend to miss",
    SupportAction.YOUNG_CARER_CONVERSATION: "a conversation about caring responsibilities at home and young-carer support",
    SupportAction.SCHOOL_NURSE_HEALTH_PLAN: "a health conversation with the school nurse, and a plan for catching up",
    SupportAction.SENCO_REVIEW: "a review with the SENCO of whether the pupil's support is meeting their needs",
    SupportAction.EARLY_HELP_CONVERSATION: "an Early Help conversation with the family about wider support",
    SupportAction.RECOGNISE_PROGRESS: "recognise the progress with the pupil and family, and keep in touch",
    SupportAction.WORK_SENT_HOME: "work sent home so the pupil can keep up while unwell, with a named contact at school",
    SupportAction.HEALTH_NEEDS_EDUCATION_CONVERSATION: (
        "a conversation with the family about the local authority's education service for children with "
        "health needs, and about returning to school when they are ready"),
}


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    text: str = Field(description="Plain English with the pupil's own numbers, fit to read to a parent.")
    weight: float = Field(description="How much this pattern raised the score (log-odds contribution).")


class WindowSummary(BaseModel):
    """The attendance counts behind the decision, over the pupil's most recent possible sessions."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    latest_date: dt.date
    possible_10: int
    attended_10: int
    possible_20: int
    attended_20: int
    possible_40: int
    attended_40: int
    possible_ytd: int
    attended_ytd: int
    earlier_possible: int
    earlier_attended: int
    current_absence_run: int
    current_run_explained: int = Field(
        0, description="Sessions of the current absence run whose reason is known to be illness, a medical "
        "appointment or a family holiday (I, M, G).")
    current_run_health: int = Field(
        0, description="Sessions of the current absence run missed through illness or a medical appointment (I, M).")
    current_run_leave: int = Field(
        0, description="Sessions of the current absence run that are leave the school authorised for another "
        "reason (C, C1, C2, E, J1, R, S, T: e.g. a bereavement, a suspension, a part-time timetable).")
    health_absence_ytd: int = Field(
        0, description="Sessions this academic year missed through illness or a medical appointment (I, M), "
        "including sessions older than the pupil's window.")
    arranged_20: int = Field(
        0, description="Of the last 20 possible sessions, those the school arranged itself: a part-time "
        "timetable (C2) or a suspension (E).")
    arranged_40: int = Field(0, description="As arranged_20, over the last 40 possible sessions.")
    possible_since_block: int = Field(
        0, description="Possible sessions after the longest absence spell of the last 40 possible sessions (the "
        "most recent one if two are as long); 0 when there was no absence.")
    attended_since_block: int = Field(0, description="Of those, the sessions attended.")
    longest_absence_run_40: int
    absence_spells_40: int
    unauthorised_40: int
    health_40: int
    late_20: int
    late_previous_20: int
    monday_friday_absences_40: int
    am_possible_40: int
    am_absences_40: int
    pm_possible_40: int
    pm_absences_40: int
    sessions_since_full_week: int
    same_weekday_days_off_40: int = Field(
        0, description="The most school days, in the last 40 possible sessions, missed on one and the same weekday: "
        "a day counts when every session of it in those 40 was missed, in a spell of at most two days, and none as "
        "leave or a session the school arranged (C, C2, E, R, ...); the latest day only once its afternoon is in. "
        "Off every Monday for three weeks gives 3.")
    same_weekday: int = Field(
        0, ge=0, le=7, description="That weekday, numbered as ISO 8601 does (1 Monday to 7 Sunday; the first in the "
        "week of two with as many days off); 0 when no day counts.")

    @property
    def absences_40(self) -> int:
        return self.possible_40 - self.attended_40


class InterventionEvent(BaseModel):
    """A supportive signal for the pastoral team about one pupil."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = EVENT_SCHEMA_VERSION
    event_id: str = Field(description="Deterministic: the same decision always has the same id (idempotency key).")
    pupil_id: str
    school_id: str
    as_of: dt.date = Field(description="Date of the register mark that raised the event.")
    kind: InterventionKind
    tier: Tier
    tier_text: str
    escalation: bool = Field(False, description="A concern raised again at a higher tier.")
    risk_score: float = Field(ge=0, le=1, description="Calibrated probability that attendance is dipping.")
    reasons: list[Reason] = Field(min_length=1)
    suggested_actions: list[SupportAction] = Field(min_length=1)
    suggested_actions_text: list[str] = Field(min_length=1)
    model_version: str
    window: WindowSummary

    @staticmethod
    def make_id(pupil_id: str, as_of: dt.date, kind: InterventionKind, tier: int) -> str:
        return str(uuid.uuid5(EVENT_NAMESPACE, f"{pupil_id}|{as_of.isoformat()}|{kind.value}|{int(tier)}"))

    def headline(self) -> str:
        """One readable line for the demo's console. It names the pupil, so never for a log."""
        because = ". ".join(reason.text for reason in self.reasons)
        actions = ", ".join(action.value.replace("_", " ") for action in self.suggested_actions)
        return (f"{self.as_of} {self.school_id} {self.pupil_id} {self.kind.value} tier {int(self.tier)} "
                f"(score {self.risk_score:.2f}): {because}. Suggested: {actions}")
