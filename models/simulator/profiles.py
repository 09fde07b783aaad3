"""Simulator profiles: the shapes and mix of the episodes laid over the baseline absence model.

`default` is the profile the model is trained on (and its held-out cohort is drawn from).
`shifted` changes what a model could overfit to while keeping the same interchange CSV and
the same national calibration targets in spirit: dips ramp faster and peak lower, family
crises are shorter, the repeated illness falls on Fridays instead of Mondays, the illness
season peaks in early December and is stronger, one-off illnesses and holidays are longer
(more two- and three-week blocks, more two-week holidays), and bereavements, suspensions,
part-time timetables, long illnesses and school closures are commoner. Training and threshold
choice never see it; `reconnect evaluate` measures the model on it as a second unseen cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["default", "shifted"]
DIP_KIND_ORDER = ("avoidance", "family_crisis", "monday_friday", "young_carer", "recurrent_illness")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    # -- how many pupils have each kind of episode (share of the cohort) ------------------------
    dip_rate: float = 0.07
    # Shares among dips, in DIP_KIND_ORDER.
    dip_shares: tuple[float, ...] = (0.27, 0.22, 0.20, 0.10, 0.21)
    long_illness_rate: float = 0.015
    illness_block_rate: float = 0.12
    illness_block_weeks: tuple[float, float, float] = (0.72, 0.20, 0.08)  # one, two, three weeks
    holiday_rate: float = 0.04
    holiday_two_week_share: float = 0.25
    bereavement_rate: float = 0.008
    bereavement_days: tuple[int, int] = (3, 8)  # inclusive range of school days
    suspension_rate: float = 0.012  # secondary; a third of it in primary
    suspension_days: tuple[int, int] = (1, 5)
    part_time_factor: float = 1.0  # times the phase's national C2 share
    low_steady_rate: float = 0.03
    partial_closure_days: int = 2  # per school: days one year group cannot attend (Y3)
    whole_closure_days: int = 1  # per school: days the whole school is closed (# planned, Y4 unexpected)
    # -- dip shapes (school days; probabilities of absence) ---------------------------------------
    avoidance_ramp: tuple[int, int] = (15, 36)
    avoidance_peak: tuple[float, float] = (0.35, 0.75)
    avoidance_recovery_share: float = 0.35
    avoidance_recovery_after: tuple[int, int] = (15, 41)
    family_peak: tuple[float, float] = (0.45, 0.85)
    family_recovery_share: float = 0.75
    family_length: tuple[int, int] = (15, 46)
    monday_friday_ramp: tuple[int, int] = (10, 26)
    monday_friday_peak: tuple[float, float] = (0.6, 0.95)
    monday_friday_recovery_share: float = 0.2
    carer_stage: tuple[int, int] = (10, 16)
    carer_peak: tuple[float, float] = (0.4, 0.7)
    recurrent_weekday: int = 0  # Monday
    recurrent_ramp: tuple[int, int] = (5, 16)
    recurrent_peak: tuple[float, float] = (0.7, 1.0)
    recurrent_extra_day: float = 0.15  # chance the day after is missed too, at full strength
    recurrent_recovery_share: float = 0.3
    long_illness_length: tuple[int, int] = (20, 41)
    # -- illness season: hazard multiplier 1 + amplitude * cos(2 pi (day - peak) / 365) -------------
    illness_peak_month_day: tuple[int, int] = (1, 20)
    illness_amplitude: float = 0.20


DEFAULT = Profile(name="default")

SHIFTED = Profile(
    name="shifted",
    dip_rate=0.07,
    dip_shares=(0.34, 0.15, 0.16, 0.14, 0.21),
    long_illness_rate=0.02,
    illness_block_rate=0.13,
    illness_block_weeks=(0.50, 0.32, 0.18),
    holiday_rate=0.05,
    holiday_two_week_share=0.55,
    bereavement_rate=0.015,
    bereavement_days=(4, 10),
    suspension_rate=0.025,
    suspension_days=(2, 5),
    part_time_factor=2.0,
    low_steady_rate=0.04,
    partial_closure_days=4,
    whole_closure_days=2,
    avoidance_ramp=(8, 21),
    avoidance_peak=(0.30, 0.60),
    avoidance_recovery_share=0.45,
    avoidance_recovery_after=(10, 30),
    family_peak=(0.40, 0.75),
    family_recovery_share=0.85,
    family_length=(10, 26),
    monday_friday_ramp=(5, 16),
    monday_friday_peak=(0.5, 0.85),
    monday_friday_recovery_share=0.3,
    carer_stage=(6, 12),
    carer_peak=(0.3, 0.6),
    recurrent_weekday=4,  # Friday
    recurrent_ramp=(3, 10),
    recurrent_peak=(0.6, 0.95),
    recurrent_extra_day=0.25,
    recurrent_recovery_share=0.4,
    long_illness_length=(15, 36),
    illness_peak_month_day=(12, 5),
    illness_amplitude=0.35,
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (DEFAULT, SHIFTED)}
