"""Attendance rates on few sessions, shrunk towards a typical pupil (one definition for features,
policy and explanations)."""

from __future__ import annotations

# National attendance is about 93%; ten sessions of that prior keep a rate on three sessions sane.
PRIOR_RATE = 0.93
PRIOR_WEIGHT = 10.0


def rate(attended, possible):  # scalars or numpy arrays
    """Attendance rate shrunk towards a typical pupil when there are few sessions."""
    return (attended + PRIOR_RATE * PRIOR_WEIGHT) / (possible + PRIOR_WEIGHT)
