"""Numbers the dip label and the alert policy share, so "one block" and "an illness" mean the
same thing in what the model learns and in what the policy holds back."""

from __future__ import annotations

FLOOR = 0.90  # the persistent-absence line: attendance under it is in the range that matters
DROP = 0.10  # a change: at least ten points below the pupil's own earlier level
BLOCK_MIN_SESSIONS = 4  # a block is at least two days; one day off is not a block
SHORT_BLOCK_SESSIONS = 20  # ten school days: the longest one-off block (an illness, a holiday)
ILLNESS_SPELL_SESSIONS = 10  # a week of illness: with little else, the shortfall is a health matter
OTHER_ABSENCES = 2  # sessions of other absence a block (or an illness) may come with
SEVERE_ABSENCE_LEVEL = 0.5  # own level under it: severely absent (the DfE's term), the attendance lead's already
WEEKDAY_PATTERN_DAYS = 3  # days off on one weekday in the last four weeks: a pattern, not chance
UNEXPLAINED_WEEK_SESSIONS = 10  # a week nobody has given a reason for: at least a clear dip (tier 2)
UNEXPLAINED_FORTNIGHT_SESSIONS = 20  # two weeks: tier 3, and a concern from any pupil whatever the score
# Longer than a school week (six school days): no longer one holiday week nobody reported, so a concern
# from a pupil who usually attends whatever the score.
UNEXPLAINED_PAST_A_WEEK_SESSIONS = 12
