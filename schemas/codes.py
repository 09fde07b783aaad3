"""The 2024 register codes for England and how each one counts.

The table is `attendance_codes.csv` beside this module, copied from the DfE code list
(School Attendance (Pupil Registration) (England) Regulations 2024, regulation 10).
Exports from before August 2024 may still carry the withdrawn codes H, J and Y; they are
accepted, mapped as DfE guidance suggests, and the mapping is reported rather than hidden.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources


class Category(StrEnum):
    PRESENT = "present"
    APPROVED_ACTIVITY = "approved_activity"
    AUTHORISED_ABSENCE = "authorised_absence"
    UNAUTHORISED_ABSENCE = "unauthorised_absence"
    NOT_POSSIBLE = "not_possible"
    ADMINISTRATIVE = "administrative"


@dataclass(frozen=True, slots=True)
class AttendanceCode:
    code: str
    meaning: str
    category: Category
    possible_session: bool
    attending: bool
    absence: bool
    authorised: bool | None
    # Stable small integer used in compact per-pupil state. Append-only: changelogs store it.
    index: int
    withdrawn: bool = False

    @property
    def unauthorised(self) -> bool:
        return self.absence and self.authorised is False

    @property
    def late(self) -> bool:
        return self.code in LATE_CODES

    @property
    def health(self) -> bool:
        return self.code in HEALTH_CODES

    @property
    def holiday(self) -> bool:
        return self.code in HOLIDAY_CODES


LATE_CODES = frozenset({"L", "U"})
HEALTH_CODES = frozenset({"I", "M"})
HOLIDAY_CODES = frozenset({"G", "H"})  # holiday not granted; H, the withdrawn authorised holiday
# "-" or blank means the register has not been taken yet: not a mark, so not a code.
REGISTER_NOT_TAKEN = frozenset({"", "-"})


class UnknownCodeError(ValueError):
    pass


class RegisterNotTakenError(ValueError):
    pass


def _parse_bool(text: str) -> bool | None:
    text = text.strip().lower()
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    raise ValueError(f"not a boolean in attendance code table: {text!r}")


def _load_table() -> dict[str, AttendanceCode]:
    table: dict[str, AttendanceCode] = {}
    source = resources.files("schemas").joinpath("attendance_codes.csv")
    with source.open(encoding="utf-8", newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle), start=1):
            table[row["code"]] = AttendanceCode(
                code=row["code"],
                meaning=row["meaning"],
                category=Category(row["category"]),
                possible_session=bool(_parse_bool(row["possible_session"])),
                attending=bool(_parse_bool(row["attending"])),
                absence=bool(_parse_bool(row["absence"])),
                authorised=_parse_bool(row["authorised"]),
                index=index,
            )
    next_index = len(table) + 1
    # Withdrawn codes kept as their own entries so a re-export shows what the school recorded.
    table["H"] = AttendanceCode(
        "H", "holiday authorised by the school (withdrawn in 2024)",
        Category.AUTHORISED_ABSENCE, True, False, True, True, next_index, withdrawn=True,
    )
    table["Y"] = AttendanceCode(
        "Y", "unable to attend due to exceptional circumstances (withdrawn in 2024, now Y1 to Y7)",
        Category.NOT_POSSIBLE, False, False, False, None, next_index + 1, withdrawn=True,
    )
    return table


CODES: dict[str, AttendanceCode] = _load_table()
BY_INDEX: tuple[AttendanceCode | None, ...] = (None, *sorted(CODES.values(), key=lambda c: c.index))
# Withdrawn codes that map onto a current one.
ALIASES: dict[str, str] = {"J": "J1"}
WITHDRAWN_NOTES: dict[str, str] = {
    "H": "withdrawn code H (authorised holiday) counted as an authorised absence",
    "J": "withdrawn code J (interview) read as J1",
    "Y": "withdrawn code Y counted as not possible (exceptional circumstances)",
}


def normalise_code(raw: str) -> str:
    """Canonical spelling of a code as written in a register export."""
    return raw.strip().upper()


def resolve(raw: str) -> tuple[AttendanceCode, str | None]:
    """The code a register mark means, and a note when a withdrawn code was mapped.

    Raises RegisterNotTakenError for "-" or blank, UnknownCodeError for anything else unknown.
    """
    code = normalise_code(raw)
    if code in REGISTER_NOT_TAKEN:
        raise RegisterNotTakenError("register not yet taken ('-' or blank is not an attendance code)")
    note = WITHDRAWN_NOTES.get(code)
    code = ALIASES.get(code, code)
    try:
        return CODES[code], note
    except KeyError:
        raise UnknownCodeError(f"unknown attendance code {raw!r}") from None
