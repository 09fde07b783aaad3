"""What "attendance dipping" means, precisely, for training and evaluation.

A pupil's attendance is dipping at the end of a school day when, over the next
`HORIZON_DAYS` school days, they attend
  * less than `FLOOR` (90%, the persistent-absence line) of their possible sessions, and
  * at least `DROP` (10 percentage points) less than their own earlier level this year.
Both parts matter: the floor keeps a 100% -> 93% wobble from counting, and the drop keeps a
pupil whose attendance is low but steady (not a change, and already known to school) from
counting. The label looks only at attendance, never at who the pupil is.
"""

from __future__ import annotations

import numpy as np

HORIZON_DAYS = 20
FLOOR = 0.90
DROP = 0.10
MIN_FUTURE_SESSIONS = 20


def dip_label(baseline_rate: np.ndarray, future_attended: np.ndarray, future_possible: np.ndarray,
              *, floor: float = FLOOR, drop: float = DROP, min_future: int = MIN_FUTURE_SESSIONS) -> np.ndarray:
    """1 where the next horizon's attendance is a dip, 0 where not, -1 where too little future is known."""
    baseline_rate = np.asarray(baseline_rate, dtype=np.float64)
    future_possible = np.asarray(future_possible, dtype=np.float64)
    future_rate = np.divide(future_attended, future_possible, out=np.ones_like(future_possible),
                            where=future_possible > 0)
    label = ((future_rate < floor) & (future_rate <= baseline_rate - drop)).astype(np.int8)
    label[future_possible < min_future] = -1
    return label
