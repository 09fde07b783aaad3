"""How far a model could go on the alert targets with this register: `reconnect-dev ceiling`.

The card scores concerns against the simulator's own dip episodes, which the shipped model never
sees: it learns the label. This tool fits a model that is given every advantage the register can
give it, and measures how close *it* comes to the targets, through the same policy:

* it is taught the truth it is scored against (`models.training.dip_episode_target`: a day end
  inside one of the pupil's dip episodes, from a few school days before onset to recovery);
* it sees the register in more detail than the shipped features (`register_detail`): the last 20
  school days session by session, every kind of mark counted over 5 to 400 school days, and days
  off on each weekday over the last 40 school days, all from the register as it finally stands
  (so it even knows amendments made after the day);
* it is a larger gradient-boosted model, fitted on six development cohorts of the training
  profile, and judged on three others, at day ends, through `models.evaluation.policy_sim`.

The shipped model is scored on the same day ends beside it. Both are judged twice: through the
policy, and with the score alone deciding (`score_alone`: no hold, and none of the policy's register
rules that raise a concern whatever the score; the tiers and cool-downs stay), so that what the
policy's own choices cost against the simulator's truth is seen apart from what the register cannot
show. Where even the score alone of that model falls short of a target, the shortfall lies in what
the register shows (and in how the simulator draws dips and ordinary absence), not in the shipped
model's features, its training or the policy. Evaluation and training seeds are refused, as for
`reconnect-dev frontier`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from devtools.frontier import FrontierPoint, cohort_files, pooled, refuse_held_back, render
from models import policy
from models.artifact import RiskModel
from models.dataset import TrainingSet, build_training_set
from models.evaluation.policy_sim import PolicySimulation
from models.evaluation.run import OFFLINE_LIMITS
from models.evaluation.scoring import AlertScore, score_alerts
from models.evaluation.truth import Truth
from models.history import RegisterYear
from models.policy import thresholds
from models.state import ARRANGED_CODES
from models.training import dip_episode_target
from schemas.codes import BY_INDEX, AttendanceCode
from schemas.interchange import read_marks

FIT_SEEDS = (99, 101, 103, 105, 107, 109)
JUDGE_SEEDS = (111, 113, 115)
ENTER_SCORES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.775, 0.8, 0.85, 0.9, 0.95)

# Kinds of mark, as a pastoral lead would read a register; 0 is no possible session.
NOT_POSSIBLE, PRESENT, LATE, UNAUTHORISED, HOLIDAY, HEALTH, ARRANGED, OTHER_AUTHORISED = range(8)
MARK_KINDS = 8
RECENT_DAYS = 20
COUNT_WINDOWS = (5, 10, 20, 40, 80, 400)
WEEKDAY_WINDOW = 40


def mark_kind(code: AttendanceCode | None) -> int:
    if code is None or not code.possible_session:
        return NOT_POSSIBLE
    if code.late:
        return LATE
    if code.attending:
        return PRESENT
    if code.code in ARRANGED_CODES:
        return ARRANGED
    if code.health:
        return HEALTH
    if code.holiday:
        return HOLIDAY
    return UNAUTHORISED if code.unauthorised else OTHER_AUTHORISED


KIND_OF_CODE = np.array([mark_kind(code) for code in BY_INDEX], dtype=np.uint8)
ABSENT_KINDS = (UNAUTHORISED, HOLIDAY, HEALTH, OTHER_AUTHORISED)


def register_detail(register: RegisterYear, pupil_id: Sequence[str], day: np.ndarray) -> np.ndarray:
    """Per row (a pupil at the end of a register day), float32 columns: the kind of each of the last
    RECENT_DAYS register days' two sessions (most recent first; NOT_POSSIBLE before the year), the
    sessions of each kind over each of COUNT_WINDOWS register days, and the days with an absence on
    each weekday (Monday first) over the last WEEKDAY_WINDOW register days. `day` must be register days."""
    kinds = KIND_OF_CODE[register.codes]  # pupils x days x 2
    pupils, days, _ = kinds.shape
    row_pupil = np.fromiter((register.index[p] for p in pupil_id), np.int64, len(pupil_id))
    row_day = np.searchsorted(register.days, day)
    if len(day) and not np.array_equal(register.days[np.minimum(row_day, days - 1)], day):
        raise ValueError("every row's day must be a register day")
    columns = []
    for back in range(RECENT_DAYS):
        earlier = row_day - back
        inside = earlier >= 0
        for session in (0, 1):
            column = np.full(len(day), NOT_POSSIBLE, dtype=np.float32)
            column[inside] = kinds[row_pupil[inside], earlier[inside], session]
            columns.append(column)
    per_kind = np.stack([(kinds == kind).sum(axis=2) for kind in range(1, MARK_KINDS)], axis=2)
    running = np.concatenate([np.zeros((pupils, 1, MARK_KINDS - 1), np.int32), per_kind.cumsum(axis=1)], axis=1)
    for window in COUNT_WINDOWS:
        start = np.maximum(row_day + 1 - window, 0)
        columns += list((running[row_pupil, row_day + 1] - running[row_pupil, start]).T.astype(np.float32))
    day_off = np.isin(kinds, ABSENT_KINDS).any(axis=2)
    weekday = np.array([dt.date.fromordinal(int(ordinal)).isoweekday() for ordinal in register.days])
    start = np.maximum(row_day + 1 - WEEKDAY_WINDOW, 0)
    for iso in range(1, 6):
        running_day = np.concatenate([np.zeros((pupils, 1), np.int32),
                                      (day_off & (weekday == iso)).cumsum(axis=1)], axis=1)
        columns.append((running_day[row_pupil, row_day + 1] - running_day[row_pupil, start]).astype(np.float32))
    return np.stack(columns, axis=1)


RECENT_COLUMNS = 2 * RECENT_DAYS


@dataclass
class Cohort:
    rows: TrainingSet
    truth: Truth
    detail: np.ndarray

    @property
    def features(self) -> np.ndarray:
        return np.hstack([self.rows.X.astype(np.float32), self.detail])


def load_cohort(cache: Path, seed: int, schools: int, pupils_per_school: int, window_days: int) -> Cohort:
    files = cohort_files(cache, seed, schools, pupils_per_school)
    marks = (record.mark for record in read_marks(files["marks"], limits=OFFLINE_LIMITS) if record.mark is not None)
    rows = build_training_set(marks, window_days=window_days, sample_every=1, keep_unlabelled=True)
    assert rows.register is not None
    return Cohort(rows, Truth.load(files["truth"], files["roster"]),
                  register_detail(rows.register, rows.pupil_id.tolist(), rows.day))


def fit_ceiling(cohorts: Sequence[Cohort], *, every: int = 2,
                seed: int = 0) -> tuple[HistGradientBoostingClassifier, int]:
    """The model taught the simulator's dip episodes on the full register detail (every `every`-th
    row), and the number of rows it was fitted on."""
    features = np.vstack([c.features[::every] for c in cohorts])
    target = np.concatenate([dip_episode_target(c.rows, c.truth)[::every] for c in cohorts])
    categorical = np.zeros(features.shape[1], dtype=bool)
    first_recent = cohorts[0].rows.X.shape[1]
    categorical[first_recent:first_recent + RECENT_COLUMNS] = True
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.08, max_leaf_nodes=63, min_samples_leaf=40,
                                           l2_regularization=1.0, categorical_features=categorical,
                                           random_state=seed)
    return model.fit(features, target), len(target)


def _score_alone_tier(config: policy.PolicyConfig, score: float, row: policy.PolicyRow) -> int:
    tier = config.tier_for(score)
    return max(tier, policy.register_tier(config, row)) if tier else 0


@contextmanager
def score_alone() -> Iterator[None]:
    """The policy with the score alone deciding whether a concern is raised: nothing on the register
    holds one back, and none of the register's own rules raises one whatever the score (the tiers
    and cool-downs stay). A measurement only: the holds keep a week of flu from becoming a concern,
    the rules raise concerns a pastoral lead would not go without, and the product keeps both."""
    with (mock.patch.object(policy, "concern_hold", lambda config, row: None),
          mock.patch.object(policy, "concern_tier", _score_alone_tier)):
        yield


@dataclass
class Ceiling:
    shipped: list[FrontierPoint]
    shipped_score_alone: list[FrontierPoint]
    ceiling: list[FrontierPoint]
    ceiling_score_alone: list[FrontierPoint]
    fitted_rows: int


def _points(cohorts: Sequence[Cohort], simulations: Sequence[PolicySimulation], scores: Sequence[np.ndarray],
            model: RiskModel, enter_scores: Sequence[float]) -> list[FrontierPoint]:
    per_score: dict[float, list[AlertScore]] = {enter: [] for enter in enter_scores}
    for cohort, simulation, score in zip(cohorts, simulations, scores, strict=True):
        for enter in enter_scores:
            alerts = simulation.alerts(score, thresholds(model.policy, enter))
            per_score[enter].append(score_alerts(alerts, cohort.truth, cohort.rows.school_days))
    return [FrontierPoint(enter, pooled(s), s) for enter, s in per_score.items()]


def measure_ceiling(model: RiskModel, *, cache: Path, window_days: int, fit_seeds: Sequence[int] = FIT_SEEDS,
                    judge_seeds: Sequence[int] = JUDGE_SEEDS, enter_scores: Sequence[float] = ENTER_SCORES,
                    schools: int = 4, pupils_per_school: int = 300,
                    echo: Callable[[str], None] = lambda line: None) -> Ceiling:
    if set(fit_seeds) & set(judge_seeds):
        raise ValueError("the cohorts a model is judged on must not be the ones it was fitted on")
    refuse_held_back([*fit_seeds, *judge_seeds], model)

    def load(seed: int) -> Cohort:
        cohort = load_cohort(cache, seed, schools, pupils_per_school, window_days)
        echo(f"seed {seed}: {len(cohort.rows):,} day ends")
        return cohort

    fitted_on = [load(seed) for seed in fit_seeds]
    ceiling, fitted_rows = fit_ceiling(fitted_on)
    echo(f"fitted on {fitted_rows:,} day ends")
    del fitted_on
    judged = [load(seed) for seed in judge_seeds]
    shipped_scores = [model.score(c.rows.X) for c in judged]
    scores = [ceiling.predict_proba(c.features)[:, 1] for c in judged]
    # The policy's inputs per day end do not depend on the score or on what `score_alone` patches.
    simulations = [PolicySimulation(c.rows, model.policy) for c in judged]
    shipped, best = (_points(judged, simulations, s, model, enter_scores) for s in (shipped_scores, scores))
    with score_alone():
        shipped_alone, best_alone = (_points(judged, simulations, s, model, enter_scores)
                                     for s in (shipped_scores, scores))
    return Ceiling(shipped, shipped_alone, best, best_alone, fitted_rows)


def render_ceiling(result: Ceiling, *, shipped_enter: float) -> str:
    taught = (f"taught the simulator's dip episodes, on the full register detail ({result.fitted_rows:,} day ends of "
              "the fitting cohorts)")
    alone = "the score alone deciding: no hold, and no register rule raising a concern whatever the score"
    return "\n\n".join(part for title, points in [
        ("The shipped model, at day ends through the policy:", result.shipped),
        (f"The shipped model, with {alone} (a measurement only):", result.shipped_score_alone),
        (f"A model {taught}, at day ends through the same policy:", result.ceiling),
        (f"The same model, with {alone} (a measurement only):", result.ceiling_score_alone),
    ] for part in (title, render(points, shipped=shipped_enter)))
