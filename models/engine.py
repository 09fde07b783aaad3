"""The decision engine: marks in, updated per-pupil state and intervention events out.

Pure and broker-free. The Faust agent, offline replay, evaluation and the backtest all drive
this same code, so the stream raises exactly the interventions that replay and evaluation saw.

A micro-batch goes through four steps:
  1. state: each mark is applied to its pupil's state; a mark that changes the record (new or
     amended) is snapshotted for a decision.
  2. counts and policy inputs for every snapshot at once (models.features, models.policy).
  3. scoring, economically: only rows whose decision can depend on the score (a flagged pupil,
     or from the first mark where the register lets a concern through, `policy.can_raise`), and
     each distinct feature row once. Every other row's decision is the same whatever its score.
  4. the policy, mark by mark in order (health needs, then concern / improving); then one
     batched attribution call for every concern's reasons; then the events, in mark order.
The scores and events are identical to scoring every row and explaining alert by alert
(tests/test_engine.py proves it).
"""

from __future__ import annotations

import bisect
import datetime as dt
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.artifact import RiskModel
from models.explain import build_event, contributions
from models.features import Snapshot, WindowBatch, feature_matrix, snapshot, summarise_batch
from models.policy import (
    Decision,
    PolicyConfig,
    PolicyInputs,
    PolicyRow,
    PolicyState,
    can_raise,
    decide,
    health_needs,
    policy_inputs,
    usually_attends,
)
from models.state import ApplyOutcome, OutsideWindowError, PupilState
from schemas.events import (
    InterventionEvent,
    InterventionKind,
    ReasonCode,
)
from schemas.marks import MarkRejected, RegisterMark, RejectReason

# Stable small numbers for reason codes, stored in the policy state (append-only).
REASON_INDEX = {code: index for index, code in enumerate(ReasonCode)}


@dataclass
class BatchResult:
    events: list[InterventionEvent] = field(default_factory=list)
    # Index in the batch of each event's mark, so callers can time mark-to-event latency.
    event_marks: list[int] = field(default_factory=list)
    rejected: list[tuple[int, MarkRejected]] = field(default_factory=list)
    outcomes: dict[ApplyOutcome, int] = field(default_factory=lambda: {o: 0 for o in ApplyOutcome})
    touched: dict[str, PupilState] = field(default_factory=dict)
    scored: int = 0  # feature rows sent to the model (distinct rows the policy could act on)
    scoring_seconds: float = 0.0

    def merge(self, other: BatchResult, offset: int) -> None:
        """Add the result of a sub-batch whose first mark was at `offset` in this batch."""
        self.events.extend(other.events)
        self.event_marks.extend(index + offset for index in other.event_marks)
        self.rejected.extend((index + offset, rejection) for index, rejection in other.rejected)
        for outcome, count in other.outcomes.items():
            self.outcomes[outcome] += count
        self.touched.update(other.touched)
        self.scored += other.scored
        self.scoring_seconds += other.scoring_seconds


@dataclass(slots=True)
class _Pending:
    index: int
    mark: RegisterMark
    state: PupilState
    # Snapshots at the mark: the state object moves on with later marks of the same batch.
    snapshot: Snapshot
    school_id: str
    day_end: bool  # the afternoon of the pupil's latest day is in (its slot is the window's last)


@dataclass(slots=True)
class _Decided:
    row: int  # position in the pending list
    decision: Decision


def distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The byte-distinct rows of X and, per row of X, the index of its distinct row."""
    X = np.ascontiguousarray(X)
    keys = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return X[first], inverse.ravel()


_POLICY_ROW_FIELDS = PolicyRow._fields


class PolicyRows(Sequence):
    """`PolicyInputs` as a sequence of `PolicyRow`, each built when first asked for: most rows of a
    batch never reach a policy rule."""

    def __init__(self, inputs: PolicyInputs) -> None:
        self.inputs = inputs
        self._rows: dict[int, PolicyRow] = {}

    def prefetch(self, indices: np.ndarray) -> None:
        """Build the rows at `indices` at once (a tenth of the cost of one at a time)."""
        indices = np.asarray(indices, dtype=np.int64)
        wanted = [i for i in indices.tolist() if i not in self._rows] if self._rows else indices.tolist()
        if not wanted:
            return
        values = [column[wanted].tolist() for column in (self.inputs.columns[name] for name in _POLICY_ROW_FIELDS)]
        self._rows.update(zip(wanted, map(PolicyRow, *values)))

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self._rows.get(i)
        if row is None:
            row = self._rows[i] = self.inputs.row(i)
        return row


def health_candidates(inputs: PolicyInputs, config: PolicyConfig) -> np.ndarray:
    """Rows where `health_needs` can fire: its threshold reached (below it, it returns None and
    changes nothing)."""
    return np.flatnonzero(inputs.columns["health_absence_ytd"] >= config.health_needs_sessions)


def concern_candidates(inputs: PolicyInputs, config: PolicyConfig) -> np.ndarray:
    """Rows where `can_raise` may hold for some pupil: its conditions on the row alone (enough
    evidence this year, nothing on the register holding a concern back: `policy.concern_hold`'s
    six holds, over the columns they read), leaving out only the pupil's own cool-down. The
    engine and the columnar replay call `can_raise` / `decide` on these rows and skip the rest,
    where they return None and change nothing; tests/test_columnar.py holds this mask equal to
    `can_raise` for a pupil never alerted, row by row."""
    c = inputs.columns
    known = c["known_run"]
    return (c["day_end"] & (c["possible_ytd"] >= config.min_possible_sessions) & ~c["health_absence"]
            & ~((known > 0) & (known <= config.explained_absence_grace_sessions))
            & (c["unarranged_rate"] < config.concern_below_rate) & ~c["one_block"]
            & (c["usual_rate"] >= config.severe_absence_level))


def concern_due(inputs: PolicyInputs, config: PolicyConfig, scores: np.ndarray) -> np.ndarray:
    """Rows where `concern_tier` is above 0 at these scores (NaN: not due): for an unflagged pupil
    `decide` raises nothing and changes nothing anywhere else, so the columnar replay asks it only
    here among the `concern_candidates`. tests/test_columnar.py holds it equal to `concern_tier`."""
    c = inputs.columns
    by_score = scores >= config.enter_score  # the config keeps enter <= tier2 <= tier3: the score's tier is > 0
    usual = usually_attends(config, c["usual_rate"], c["earlier_rate"])
    silent = c["unexplained_run"] >= config.usual_unexplained_run
    unseen = c["unexplained_run"] >= config.tier3_unexplained_run
    weekday_pattern = c["same_weekday_days"] >= config.weekday_pattern_days
    return by_score | unseen | (usual & (silent | weekday_pattern))


class SmallBatchScorer:
    """The risk model's probabilities for a handful of rows, without scikit-learn's fixed cost per
    call (input checks, 150 separate tree calls, the calibrator's checks: about 5 ms, whatever
    the rows): the same trees walked for all rows at once with numpy, the same sums in the same
    order, the model's own isotonic calibrator. Built only for the structure the shipped model
    has (a calibrated boosted classifier, one isotonic calibrator, no categorical features) and
    only if it gives `model.score`'s numbers bit for bit on a probe set; otherwise `of` returns
    None and the model scores as it always did. Above `LIMIT` rows the model is faster."""

    LIMIT = 64

    def __init__(self, model: RiskModel) -> None:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.isotonic import IsotonicRegression

        final = model.pipeline[-1]
        if len(model.pipeline) != 1 or not isinstance(final, CalibratedClassifierCV):
            raise TypeError("not a lone calibrated classifier")
        (calibrated,) = final.calibrated_classifiers_
        booster, (calibrator,) = calibrated.estimator, calibrated.calibrators
        if (not isinstance(booster, HistGradientBoostingClassifier) or calibrated.method != "isotonic"
                or not isinstance(calibrator, IsotonicRegression) or calibrator.out_of_bounds != "clip"
                or booster.n_trees_per_iteration_ != 1 or booster._preprocessor is not None  # noqa: SLF001
                or booster.is_categorical_ is not None or list(booster.classes_) != [0, 1]
                or list(calibrated.classes) != [0, 1]):
            raise TypeError("not the structure this scorer walks")
        trees = [predictors[0].nodes for predictors in booster._predictors]  # noqa: SLF001
        nodes = np.concatenate(trees)
        if nodes["is_categorical"].any():
            raise TypeError("categorical splits")
        starts = np.cumsum([0] + [len(tree) for tree in trees])[:-1].astype(np.int64)
        offset = np.repeat(starts, [len(tree) for tree in trees])
        leaf = nodes["is_leaf"].astype(bool)
        here = np.arange(len(nodes), dtype=np.int64)
        # A node is kept as twice its index, so a step is one add and one lookup: `next[id + goes_left]`
        # is where the node leads ([right, left] by "goes left"; a leaf leads to itself), and the
        # per-node arrays are laid out twice over to be read by the same ids.
        self.next = np.empty(2 * len(nodes), dtype=np.int64)
        self.next[0::2] = 2 * np.where(leaf, here, nodes["right"].astype(np.int64) + offset)
        self.next[1::2] = 2 * np.where(leaf, here, nodes["left"].astype(np.int64) + offset)
        self.feature = np.repeat(nodes["feature_idx"].astype(np.int64), 2)
        self.threshold = np.repeat(nodes["num_threshold"].astype(np.float64), 2)
        self.missing_left = np.repeat(nodes["missing_go_to_left"].astype(bool), 2)
        self.value = np.repeat(nodes["value"].astype(np.float64), 2)
        self.is_leaf = np.repeat(leaf, 2)
        self.roots = 2 * starts
        self.depth = int(nodes["depth"].max())
        self.baseline = np.asarray(booster._baseline_prediction, dtype=np.float64).ravel()[0]  # noqa: SLF001
        self.calibrator = calibrator
        # scipy's linear interp1d of float64 points calls np.interp itself; calling it directly
        # saves interp1d's own checks (the probe in `of` confirms the numbers are the same).
        curve = calibrator.f_
        linear = getattr(type(curve), "_call_linear_np", None)
        self.curve = (curve.x, curve.y) if linear is not None and getattr(curve, "_call", None) is linear else None
        self._single_row_layout(nodes, leaf, offset, len(model.feature_names))

    def _single_row_layout(self, nodes: np.ndarray, leaf: np.ndarray, offset: np.ndarray, width: int) -> None:
        """The nodes numbered again for one row at a time: split nodes first, grouped by feature, then
        the leaves. A lone row's scoring is mostly the cost of each numpy call and of fetching the
        walk's scattered nodes from memory (the engine's other work between two calls evicts them);
        here every split is decided at once over arrays read front to back (the row's values
        repeated per feature against the thresholds in the same order), and the walk is then one
        small lookup a level."""
        split = np.flatnonzero(~leaf)
        order = np.concatenate((split[np.argsort(nodes["feature_idx"][split], kind="stable")], np.flatnonzero(leaf)))
        number = np.empty(len(nodes), dtype=np.int64)
        number[order] = np.arange(len(nodes))
        ordered = nodes[order[:len(split)]]
        self.splits = len(split)
        self.split_counts = np.bincount(ordered["feature_idx"], minlength=width)
        self.split_threshold = ordered["num_threshold"].astype(np.float64)
        self.split_missing_left = ordered["missing_go_to_left"].astype(bool)
        self.split_right = number[ordered["right"].astype(np.int64) + offset[order[:len(split)]]]
        self.split_left_step = number[ordered["left"].astype(np.int64) + offset[order[:len(split)]]] - self.split_right
        self.leads_to_itself = np.arange(len(nodes), dtype=np.int64)
        self.single_roots = number[self.roots // 2]
        self.single_value = nodes["value"][order].astype(np.float64)
        self.knots = (self.curve[0].tolist(), self.curve[1].tolist()) if self.curve is not None else None
        self.clip_range = (float(self.calibrator.X_min_), float(self.calibrator.X_max_))

    @classmethod
    def of(cls, model: RiskModel) -> SmallBatchScorer | None:
        """The scorer for this model, if it reproduces the model's scores exactly."""
        try:
            scorer = cls(model)
        except (TypeError, AttributeError, ValueError):
            return None
        if scorer.knots is not None and not scorer._calibrates_one_as_numpy():  # noqa: SLF001
            scorer.knots = None  # lone rows then take the batch walk and numpy's interp
        width = len(model.feature_names)
        probe = np.random.default_rng(20251).normal(0.4, 0.7, size=(cls.LIMIT, width))
        probe[::5, ::3] = np.nan
        probe[1::7] = np.round(probe[1::7], 1)  # values on round thresholds
        if model.reference is not None:
            probe[0] = model.reference
        complete = np.nan_to_num(probe)  # the walk without missing values is a path of its own
        for rows in (probe[:1], probe[:7], probe, complete[:1], complete[:7], complete):
            if not np.array_equal(scorer.score(rows), model.score(rows), equal_nan=True):
                return None
        for rows in (probe, complete):
            one_by_one = np.array([scorer.score(row[None, :])[0] for row in rows])
            if not np.array_equal(one_by_one, model.score(rows), equal_nan=True):
                return None
        return scorer

    def _calibrates_one_as_numpy(self) -> bool:
        """`calibrate_one` against numpy's clip and interp at every knot, either side of it, between
        knots and beyond both ends."""
        xs = np.asarray(self.knots[0])
        low, high = self.clip_range
        points = np.concatenate((xs, np.nextafter(xs, -np.inf), np.nextafter(xs, np.inf), (xs[1:] + xs[:-1]) / 2,
                                 [low, high, low - 1.0, high + 1.0, -np.inf, np.inf, np.nan]))
        expected = np.interp(np.clip(points, low, high), *self.curve)
        found = np.array([self.calibrate_one(float(x)) for x in points])
        return bool(np.array_equal(found, expected, equal_nan=True))

    def score(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        n, width = rows.shape
        if n == 1 and self.knots is not None:
            return np.array([self.score_one(rows[0])])
        trees = len(self.roots)
        node = np.tile(self.roots, n) if n > 1 else self.roots
        flat = rows.ravel()
        start = np.repeat(np.arange(n, dtype=np.int64) * width, trees) if n > 1 else None
        missing = bool(np.isnan(flat).any())
        half = self.depth // 2
        for level in range(self.depth):
            at = self.feature[node]
            value = flat[at if start is None else start + at]
            goes_left = value <= self.threshold[node]
            if missing:
                goes_left |= np.isnan(value) & self.missing_left[node]
            node = self.next[node + goes_left]
            # Stop once every tree is at a leaf (a row's deepest leaf is usually a few levels above
            # the deepest tree's); a leaf leads to itself, so looking only every other level, and not
            # before half the depth, costs a level at most.
            if level >= half and level % 2 and self.is_leaf[node].all():
                break
        # The leaves summed tree by tree in order from the baseline, as the booster adds them.
        leaves = np.concatenate((np.full((n, 1), self.baseline), self.value[node].reshape(n, trees)), axis=1)
        raw = np.cumsum(leaves, axis=1)[:, -1]
        calibrator = self.calibrator
        clipped = np.clip(raw, calibrator.X_min_, calibrator.X_max_)
        if self.curve is not None:
            probability = np.interp(clipped, *self.curve).astype(np.float64)
        else:
            probability = calibrator.f_(clipped).astype(np.float64)
        if probability.max() > 1.0:
            probability[(1.0 < probability) & (probability <= 1.0 + 1e-5)] = 1.0
        return probability

    def score_one(self, row: np.ndarray) -> float:
        """One row's probability: `score`'s numbers, by the single-row layout."""
        values = np.repeat(row, self.split_counts)
        goes_left = values <= self.split_threshold
        if np.isnan(row).any():
            goes_left |= np.isnan(values) & self.split_missing_left
        leads_to = self.leads_to_itself.copy()
        steps = leads_to[:self.splits]
        np.multiply(goes_left, self.split_left_step, out=steps)
        steps += self.split_right
        node = self.single_roots
        for level in range(self.depth):
            node = leads_to[node]
            if level % 2 and (node >= self.splits).all():
                break
        raw = float(self.baseline)
        for value in self.single_value[node].tolist():  # one add at a time, in tree order, as cumsum
            raw += value
        probability = self.calibrate_one(raw)
        return 1.0 if 1.0 < probability <= 1.0 + 1e-5 else probability

    def calibrate_one(self, raw: float) -> float:
        """The isotonic calibrator's clip and `np.interp` for one number, in Python floats: the same
        operations in the same order as numpy's interp (`of` checks it at and around every knot)."""
        low, high = self.clip_range
        x = low if raw < low else high if raw > high else raw
        xs, ys = self.knots
        if x != x:
            return x
        if x >= xs[-1]:
            return ys[-1]
        if x <= xs[0]:
            return ys[0]
        j = bisect.bisect_right(xs, x) - 1
        if x == xs[j]:
            return ys[j]
        slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
        found = slope * (x - xs[j]) + ys[j]
        if found != found:
            found = slope * (x - xs[j + 1]) + ys[j + 1]
            if found != found and ys[j] == ys[j + 1]:
                found = ys[j]
        return found


class _Scoring:
    """The model as `explain.contributions` sees it, scoring small batches with the fast scorer."""

    def __init__(self, model: RiskModel, scorer: SmallBatchScorer | None) -> None:
        self._model, self._scorer = model, scorer

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def score(self, rows: np.ndarray) -> np.ndarray:
        if self._scorer is not None and len(rows) <= self._scorer.LIMIT:
            return self._scorer.score(rows)
        return self._model.score(rows)


class DecisionEngine:
    def __init__(self, model: RiskModel, *, window_days: int, policy: PolicyConfig | None = None,
                 support_needs: Callable[[str], frozenset[str]] | None = None) -> None:
        self.model = model
        self.policy = policy or model.policy
        self.window_days = window_days
        self.support_needs = support_needs or (lambda pupil_id: frozenset())
        self.scoring = _Scoring(model, SmallBatchScorer.of(model))

    def new_state(self, mark: RegisterMark) -> PupilState:
        return PupilState(mark.school_id, self.window_days, mark.date)

    def process(self, marks: Sequence[RegisterMark], states: MutableMapping[str, PupilState]) -> BatchResult:
        """Apply a batch of valid marks in order; states is read and updated in place."""
        result = BatchResult()
        pending = self._apply(marks, states, result)
        if not pending:
            return result
        batch = summarise_batch([p.snapshot for p in pending])
        inputs = policy_inputs(batch.columns, batch.latest_ordinal, self.policy, np.array([p.day_end for p in pending]))
        rows = PolicyRows(inputs)
        # Health needs first, for every row that could reach the threshold (it changes nothing else).
        health: dict[int, Decision] = {}
        for i in health_candidates(inputs, self.policy):
            decision = health_needs(pending[i].state.policy, self.policy, rows[i])
            if decision is not None:
                health[i] = decision
        need = self._needs_score(pending, rows)
        for i in health:
            need[i] = True  # the event carries the score
        X = feature_matrix(batch)
        scores = self._score(X, need, result)
        decided: list[_Decided] = []
        for i, item in enumerate(pending):
            if i in health:
                decided.append(_Decided(i, health[i]))
            if need[i]:
                decision = decide(item.state.policy, self.policy, scores[i], rows[i])
                if decision is not None:
                    decided.append(_Decided(i, decision))
        who = {d.row: (pending[d.row].mark.pupil_id, pending[d.row].school_id, pending[d.row].mark.date,
                       pending[d.row].state.policy) for d in decided}
        self._publish(decided, scores, X, batch, who, [p.index for p in pending], result)
        return result

    def _publish(self, decided: Sequence[_Decided], scores: Sequence[float], X: np.ndarray, batch: WindowBatch,
                 who: Mapping[int, tuple[str, str, dt.date, PolicyState]], marks: Sequence[int],
                 result: BatchResult) -> None:
        """Events for the decisions, in order: one attribution call for every concern, then each
        event built and, unless an open support plan holds it back, added to the result.
        `who[row]` is the row's (pupil, school, day, policy state); `marks[row]` its mark's index."""
        concerns = [d.row for d in decided if d.decision.kind is InterventionKind.CONCERN]
        weights = dict(zip(concerns, self._explain(X[concerns]))) if concerns else {}
        for d in decided:
            pupil_id, school_id, day, policy = who[d.row]
            event = build_event(
                kind=d.decision.kind, tier=d.decision.tier, escalation=d.decision.escalation, score=scores[d.row],
                pupil_id=pupil_id, school_id=school_id, as_of=day, stats=batch.row(d.row),
                contributions=weights.get(d.row), model_version=self.model.version,
                rate_at_alert=d.decision.rate_at_alert, support_needs=self.support_needs(pupil_id))
            if not self._suppressed_by_plan(policy, event):
                result.events.append(event)
                result.event_marks.append(marks[d.row])

    def _apply(self, marks: Sequence[RegisterMark], states: MutableMapping[str, PupilState],
               result: BatchResult) -> list[_Pending]:
        pending: list[_Pending] = []
        for index, mark in enumerate(marks):
            state = result.touched.get(mark.pupil_id) or states.get(mark.pupil_id)
            if state is None:
                state = self.new_state(mark)
            try:
                outcome = state.apply(mark)
            except OutsideWindowError as exc:
                result.rejected.append((index, MarkRejected(RejectReason.OUTSIDE_STATE_WINDOW, str(exc))))
                continue
            result.outcomes[outcome] += 1
            result.touched[mark.pupil_id] = state
            # Only a change to the pupil's record can change the decision.
            if outcome in (ApplyOutcome.NEW, ApplyOutcome.AMENDED):
                pending.append(_Pending(index, mark, state, snapshot(state), state.school_id, state.codes[-1] != 0))
        for pupil_id, state in result.touched.items():
            states[pupil_id] = state
        return pending

    def _needs_score(self, pending: Sequence[_Pending], rows: Sequence[PolicyRow]) -> list[bool]:
        """Rows whose decision can depend on the score. A pupil flagged at the start of the batch:
        every row. Otherwise the pupil's policy state cannot change before a concern is raised,
        so rows before the first one where `can_raise` holds are decided without a score, and
        every row from it on is scored (the concern may be raised there). `can_raise` is asked
        only of rows that pass its cheap necessary conditions (`concern_candidates`)."""
        candidate = concern_candidates(rows.inputs, self.policy) if isinstance(rows, PolicyRows) else None
        live: dict[str, bool] = {}
        need = []
        for i, item in enumerate(pending):
            pupil = item.mark.pupil_id
            state = live.get(pupil)
            if state is None:
                state = live[pupil] = item.state.flagged
            if not state and (candidate is None or candidate[i]) and can_raise(item.state.policy, self.policy, rows[i]):
                state = live[pupil] = True
            need.append(state)
        return need

    def _score(self, X: np.ndarray, need: Sequence[bool], result: BatchResult) -> list[float]:
        """Scores for the rows in `need` (each distinct row scored once); NaN for the others."""
        scores = np.full(len(X), np.nan)
        wanted = np.flatnonzero(need)
        if wanted.size:
            unique, inverse = distinct_rows(X[wanted])
            started = time.perf_counter()
            scored = self.scoring.score(unique)
            result.scoring_seconds += time.perf_counter() - started
            result.scored += len(unique)
            scores[wanted] = scored[inverse]
        return scores.tolist()

    def _explain(self, rows: np.ndarray) -> np.ndarray:
        """Attributions of every concern of the batch, in one call."""
        return contributions(self.scoring, rows)

    @staticmethod
    def _suppressed_by_plan(policy: PolicyState, event: InterventionEvent) -> bool:
        """While a support plan is open, the same pattern getting worse is not re-alerted:
        the team already has it in hand. A different pattern, recovery or health needs still go out."""
        if event.kind is not InterventionKind.CONCERN:
            return False
        pattern = REASON_INDEX[event.reasons[0].code]
        suppressed = policy.plan_open and pattern == policy.alert_reason
        if not suppressed:
            policy.alert_reason = pattern
        return suppressed
