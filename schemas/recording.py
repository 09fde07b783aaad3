"""Which recording of a session counts: the one rule, shared by every reader of marks.

A register session can be recorded many times (a redelivery, a re-export, an amendment from
N to I at noon). Of all recordings of one (pupil, date, session) the one with the latest
`recorded_at` wins; two recordings at the same second are ordered by code index, so the
result is the same whatever order they arrive in. The worker's state, the outcomes report
and the caseload's session grid all apply this rule.
"""

from __future__ import annotations

import datetime as dt

RECORDING_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
MAX_STAMP = 2**32 - 1


def recording_stamp(recorded_at: dt.datetime) -> int:
    """Whole seconds since 2000 (UTC), in 32 bits; 0 is kept for "no recording"."""
    seconds = int((recorded_at - RECORDING_EPOCH).total_seconds())
    return min(max(seconds, 1), MAX_STAMP)


def supersedes(stamp: int, code_index: int, held_stamp: int, held_code_index: int) -> bool:
    """True when a recording (stamp, code) replaces the one held for the same session."""
    return (stamp, code_index) > (held_stamp, held_code_index)
