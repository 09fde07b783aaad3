"""The real policy run over day-end scores: a fast stand-in for a full replay, used by training
to choose the entry threshold (the engine decides at every mark, this once per day end; both
call `models.policy.decide` on `models.policy.policy_inputs`)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np

from models.dataset import TrainingSet
from models.policy import PolicyConfig, PolicyState, decide, policy_inputs
from schemas.events import InterventionKind


class PolicySimulation:
    """Day-end rows in (pupil, date) order with their policy inputs, worked out once."""

    def __init__(self, rows: TrainingSet, config: PolicyConfig) -> None:
        self.order = np.lexsort((rows.day, rows.pupil_id.astype(str)))
        self.pupils = rows.pupil_id[self.order].tolist()
        self.inputs = policy_inputs({k: v[self.order] for k, v in rows.stats.items()}, rows.day[self.order],
                                    config).rows()

    def alerts(self, scores: np.ndarray, config: PolicyConfig) -> dict[str, list[dt.date]]:
        """pupil -> dates of raised concerns (escalations are not alerts) when the policy sees these scores."""
        ordered = np.asarray(scores, dtype=np.float64)[self.order].tolist()
        states: dict[str, PolicyState] = {}
        raised: dict[str, list[dt.date]] = defaultdict(list)
        for pupil, row, score in zip(self.pupils, self.inputs, ordered):
            state = states.get(pupil)
            if state is None:
                state = states[pupil] = PolicyState()
            decision = decide(state, config, score, row)
            if decision is not None and decision.kind is InterventionKind.CONCERN and not decision.escalation:
                raised[pupil].append(dt.date.fromordinal(row.day))
        return dict(raised)


def policy_alerts(scores: np.ndarray, rows: TrainingSet, config: PolicyConfig) -> dict[str, list[dt.date]]:
    return PolicySimulation(rows, config).alerts(scores, config)
