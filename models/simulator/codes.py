"""The register codes the simulator writes, as small integers for numpy arrays.

Every code is looked up in the project's code table (schemas.codes), so counting rules
(possible session, absence, authorised) come from one place and cannot drift.
"""

from __future__ import annotations

import numpy as np

from schemas.codes import CODES

# Order is arbitrary but fixed: arrays of int8 index into it.
CODE_LIST: tuple[str, ...] = ("/", "\\", "L", "B", "V", "P", "I", "M", "C", "C2", "R", "E", "O", "N", "G", "U",
                              "Y3", "Y4", "#")
CODE_INDEX: dict[str, int] = {code: index for index, code in enumerate(CODE_LIST)}
N_CODES = len(CODE_LIST)

for _code in CODE_LIST:
    if _code not in CODES or CODES[_code].withdrawn:
        raise RuntimeError(f"simulator code {_code!r} is not a current code in schemas.codes")

PRESENT_AM = np.int8(CODE_INDEX["/"])
PRESENT_PM = np.int8(CODE_INDEX["\\"])
LATE = np.int8(CODE_INDEX["L"])
ILLNESS = np.int8(CODE_INDEX["I"])
MEDICAL = np.int8(CODE_INDEX["M"])
PART_TIME = np.int8(CODE_INDEX["C2"])
OTHER_UNAUTHORISED = np.int8(CODE_INDEX["O"])
NOT_YET_KNOWN = np.int8(CODE_INDEX["N"])
HOLIDAY = np.int8(CODE_INDEX["G"])
AFTER_CLOSE = np.int8(CODE_INDEX["U"])
EXCEPTIONAL_LEAVE = np.int8(CODE_INDEX["C"])  # e.g. a bereavement
SUSPENDED = np.int8(CODE_INDEX["E"])
PART_CLOSED = np.int8(CODE_INDEX["Y3"])  # part of the premises closed
SITE_CLOSED = np.int8(CODE_INDEX["Y4"])  # the whole site unexpectedly closed
PLANNED_CLOSURE = np.int8(CODE_INDEX["#"])

IS_POSSIBLE = np.array([CODES[c].possible_session for c in CODE_LIST], dtype=bool)
IS_ABSENCE = np.array([CODES[c].absence for c in CODE_LIST], dtype=bool)
IS_AUTHORISED = np.array([CODES[c].absence and CODES[c].authorised is True for c in CODE_LIST], dtype=bool)
IS_UNAUTHORISED = np.array([CODES[c].unauthorised for c in CODE_LIST], dtype=bool)
IS_ATTENDING = np.array([CODES[c].attending for c in CODE_LIST], dtype=bool)
IS_PLAIN_PRESENT = np.isin(np.array(CODE_LIST, dtype=object), ["/", "\\"])

# Chance that an absence with this final code was first marked N (reason not yet known)
# and amended later: parents often ring in after registration; unexplained absence is
# chased up and usually lands on O. Other codes are entered from a note or a prior request.
N_FIRST_PROBABILITY = np.zeros(N_CODES, dtype=np.float64)
N_FIRST_PROBABILITY[CODE_INDEX["I"]] = 0.20
N_FIRST_PROBABILITY[CODE_INDEX["O"]] = 0.35
N_FIRST_PROBABILITY[CODE_INDEX["G"]] = 0.25
N_FIRST_PROBABILITY[CODE_INDEX["M"]] = 0.05


def code_indices(codes: list[str] | tuple[str, ...]) -> np.ndarray:
    return np.array([CODE_INDEX[c] for c in codes], dtype=np.int8)
