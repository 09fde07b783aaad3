"""The decision engine: marks in, updated per-pupil state and intervention events out.

Pure and broker-free. The Faust agent, offline replay and training all drive this same code,
so the stream raises exactly the interventions that replay and evaluation saw.
Marks are processed in micro-batches: state updates and features per mark, one vectorised
model call per batch, then the policy per mark in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.artifact import RiskModel
from models.explain import build_event
from models.features import Snapshot, features_batch, snapshot
from models.policy import Decision, DecisionKind, PolicyConfig, PolicyState, decide, explained_runs
from models.state import ApplyOutcome, OutsideWindowError, PupilState
from schemas.events import InterventionEvent, InterventionKind, ReasonCode, WindowSummary
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
    scored: int = 0
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
        if not pending:
            return result
        batch, X = features_batch([p.snapshot for p in pending])
        started = time.perf_counter()
        scores = self.model.score(X)
        result.scoring_seconds = time.perf_counter() - started
        result.scored = len(pending)
        possible_ytd = batch["possible_ytd"].tolist()
        recent_rate = (batch["attended_20"] / np.maximum(batch["possible_20"], 1)).tolist()
        short_rate = (batch["attended_10"] / np.maximum(batch["possible_10"], 1)).tolist()
        explained_run = explained_runs(batch["current_absence_run"], batch["current_run_explained"]).tolist()
        for i, (item, score) in enumerate(zip(pending, scores.tolist())):
            decision = decide(item.state.policy, self.policy, score, day=item.snapshot.latest_ordinal,
                              possible_sessions=possible_ytd[i], recent_rate=recent_rate[i],
                              short_rate=short_rate[i], explained_run=explained_run[i])
            if decision is None:
                continue
            event = self._event(item, decision, score, batch.row(i), X[i])
            if not self._suppressed_by_plan(item.state.policy, event):
                result.events.append(event)
                result.event_marks.append(item.index)
        return result

    @staticmethod
    def _suppressed_by_plan(policy: PolicyState, event: InterventionEvent) -> bool:
        """While a support plan is open, the same pattern getting worse is not re-alerted:
        the team already has it in hand. A different pattern, or recovery, still goes out."""
        if event.kind is not InterventionKind.CONCERN:
            return False
        pattern = REASON_INDEX[event.reasons[0].code]
        suppressed = policy.plan_open and pattern == policy.alert_reason
        if not suppressed:
            policy.alert_reason = pattern
        return suppressed

    def _event(self, item: _Pending, decision: Decision, score: float, stats: WindowSummary,
               row: np.ndarray) -> InterventionEvent:
        concern = decision.kind is DecisionKind.CONCERN
        return build_event(
            kind=InterventionKind.CONCERN if concern else InterventionKind.IMPROVING,
            tier=decision.tier, escalation=decision.escalation, score=score,
            pupil_id=item.mark.pupil_id, school_id=item.school_id, as_of=item.mark.date, stats=stats,
            contributions=self.model.contributions(row) if concern else None, model_version=self.model.version,
            rate_at_alert=decision.rate_at_alert, support_needs=self.support_needs(item.mark.pupil_id),
        )


