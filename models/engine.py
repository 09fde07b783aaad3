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

import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.artifact import RiskModel
from models.explain import build_event, contributions
from models.features import Snapshot, feature_matrix, snapshot, summarise_batch
from models.policy import (
    Decision,
    PolicyConfig,
    PolicyRow,
    PolicyState,
    can_raise,
    decide,
    health_needs,
    policy_inputs,
)
from models.state import ApplyOutcome, OutsideWindowError, PupilState
from schemas.events import (
    InterventionEvent,
    InterventionKind,
    ReasonCode,
    WindowSummary,
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


class DecisionEngine:
    def __init__(self, model: RiskModel, *, window_days: int, policy: PolicyConfig | None = None,
                 support_needs: Callable[[str], frozenset[str]] | None = None) -> None:
        self.model = model
        self.policy = policy or model.policy
        self.window_days = window_days
        self.support_needs = support_needs or (lambda pupil_id: frozenset())

    def new_state(self, mark: RegisterMark) -> PupilState:
        return PupilState(mark.school_id, self.window_days, mark.date)

    def process(self, marks: Sequence[RegisterMark], states: MutableMapping[str, PupilState]) -> BatchResult:
        """Apply a batch of valid marks in order; states is read and updated in place."""
        result = BatchResult()
        pending = self._apply(marks, states, result)
        if not pending:
            return result
        batch = summarise_batch([p.snapshot for p in pending])
        rows = policy_inputs(batch.columns, batch.latest_ordinal, self.policy).rows()
        health = [health_needs(p.state.policy, self.policy, row) for p, row in zip(pending, rows)]
        need = self._needs_score(pending, rows)
        for i, decision in enumerate(health):
            need[i] = need[i] or decision is not None  # the event carries the score
        X = feature_matrix(batch)
        scores = self._score(X, need, result)
        decided: list[_Decided] = []
        for i, (item, row) in enumerate(zip(pending, rows)):
            if health[i] is not None:
                decided.append(_Decided(i, health[i]))
            if need[i]:
                decision = decide(item.state.policy, self.policy, scores[i], row)
                if decision is not None:
                    decided.append(_Decided(i, decision))
        concerns = [d.row for d in decided if d.decision.kind is InterventionKind.CONCERN]
        weights = dict(zip(concerns, self._explain(X[concerns]))) if concerns else {}
        for d in decided:
            item = pending[d.row]
            event = self._event(item, d.decision, scores[d.row], batch.row(d.row), weights.get(d.row))
            if not self._suppressed_by_plan(item.state.policy, event):
                result.events.append(event)
                result.event_marks.append(item.index)
        return result

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
                pending.append(_Pending(index, mark, state, snapshot(state), state.school_id))
        for pupil_id, state in result.touched.items():
            states[pupil_id] = state
        return pending

    def _needs_score(self, pending: Sequence[_Pending], rows: Sequence[PolicyRow]) -> list[bool]:
        """Rows whose decision can depend on the score. A pupil flagged at the start of the batch:
        every row. Otherwise the pupil's policy state cannot change before a concern is raised,
        so rows before the first one where `can_raise` holds are decided without a score, and
        every row from it on is scored (the concern may be raised there)."""
        live: dict[str, bool] = {}
        need = []
        for item, row in zip(pending, rows):
            pupil = item.mark.pupil_id
            policy = item.state.policy
            if pupil not in live:
                live[pupil] = policy.flagged
            if not live[pupil] and can_raise(policy, self.policy, row):
                live[pupil] = True
            need.append(live[pupil])
        return need

    def _score(self, X: np.ndarray, need: Sequence[bool], result: BatchResult) -> list[float]:
        """Scores for the rows in `need` (each distinct row scored once); NaN for the others."""
        scores = np.full(len(X), np.nan)
        wanted = np.flatnonzero(need)
        if wanted.size:
            unique, inverse = distinct_rows(X[wanted])
            started = time.perf_counter()
            scored = self.model.score(unique)
            result.scoring_seconds += time.perf_counter() - started
            result.scored += len(unique)
            scores[wanted] = scored[inverse]
        return scores.tolist()

    def _explain(self, rows: np.ndarray) -> np.ndarray:
        """Attributions of every concern of the batch, in one call."""
        return contributions(self.model, rows)

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

    def _event(self, item: _Pending, decision: Decision, score: float, stats: WindowSummary,
               weights: np.ndarray | None) -> InterventionEvent:
        return build_event(
            kind=decision.kind, tier=decision.tier, escalation=decision.escalation, score=score,
            pupil_id=item.mark.pupil_id, school_id=item.school_id, as_of=item.mark.date, stats=stats,
            contributions=weights, model_version=self.model.version, rate_at_alert=decision.rate_at_alert,
            support_needs=self.support_needs(item.mark.pupil_id),
        )
