"""The register-mark contract: what a school's register says about one pupil in one session.

Validation is strict and every rejection carries a machine reason and a sentence, so a row or
message that cannot be used lands in the dead-letter topic with an explanation, never silently.

Hostile input is bounded before it is interpreted (`MarkLimits`): message size, JSON nesting
depth (checked on the text, before any recursive parser sees it), number sizes, the range of
`recorded_at` (a far-future recording would otherwise win every later correction), and the
shape of ids. Parsing therefore only ever raises `MarkRejected`; anything else is a defect.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from itertools import accumulate
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from schemas.codes import WITHDRAWN_NOTES, RegisterNotTakenError, UnknownCodeError, normalise_code, resolve

SCHEMA_VERSION = 1
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Before this no school register could be in a live export; dates earlier are typos (e.g. 0225-09-01).
EARLIEST_DATE = dt.date(2000, 1, 1)
DEFAULT_MAX_FUTURE_DAYS = 31
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_MAX_JSON_DEPTH = 8
DEFAULT_RECORDED_AT_MAX_SKEW = dt.timedelta(minutes=15)
# Names are not pseudonyms: a pseudonym is letters and digits with '-' or '_' and at least one
# digit (a trust's pseudonymisation of UPNs always has some), so "Jane-Smith" is refused.
DEFAULT_PUPIL_ID_PATTERN = r"(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{1,64}"
# A mark's only number is its schema version; 32 characters hold any int64 or double literal.
# Longer literals are refused before Python converts them (its int parser is quadratic and
# raises ValueError past 4300 digits).
MAX_NUMBER_CHARS = 32
# Text longer than this is never a date, a session or a code: refused before it is looked at.
_MAX_SHORT_FIELD = 40
# C0 controls and DEL: never part of an id, and a sign of a corrupt or hostile row.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Session(StrEnum):
    AM = "AM"
    PM = "PM"


class RejectReason(StrEnum):
    """Why a mark could not be used. Stable machine codes: dashboards and alerts key on them."""

    EMPTY_PAYLOAD = "empty_payload"  # a tombstone (no value) or zero bytes
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    JSON_TOO_DEEP = "json_too_deep"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"  # huge literals, NaN and infinities
    DUPLICATE_KEY = "duplicate_key"  # parsers disagree on which copy wins: refuse both
    PAYLOAD_TOO_LARGE = "payload_too_large"
    MALFORMED_ROW = "malformed_row"
    MISSING_FIELD = "missing_field"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    EMPTY_ID = "empty_id"
    MALFORMED_ID = "malformed_id"
    INVALID_DATE = "invalid_date"
    IMPLAUSIBLE_DATE = "implausible_date"
    FUTURE_DATE = "future_date"
    UNKNOWN_SESSION = "unknown_session"
    UNKNOWN_CODE = "unknown_code"
    REGISTER_NOT_TAKEN = "register_not_taken"
    INVALID_RECORDED_AT = "invalid_recorded_at"
    IMPLAUSIBLE_RECORDED_AT = "implausible_recorded_at"  # before the configured floor
    FUTURE_RECORDED_AT = "future_recorded_at"  # later than now plus the allowed clock skew
    OUTSIDE_STATE_WINDOW = "outside_state_window"
    INVALID_FIELD = "invalid_field"
    INTERNAL_ERROR = "internal_error"  # a defect met while handling this record: kept, never lost


@dataclass(frozen=True, slots=True)
class MarkLimits:
    """What a mark may be beyond its types: the bounds that turn hostile input into an ordinary
    rejection with a precise reason. Built once from the settings and passed to the parsers."""

    max_future_days: int | None = DEFAULT_MAX_FUTURE_DAYS  # None: no limit on dates ahead
    max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES  # None: no limit (CSV rows: 1 MiB)
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    recorded_at_max_skew: dt.timedelta = DEFAULT_RECORDED_AT_MAX_SKEW  # how far past "now" a recording may be
    recorded_at_floor: dt.date = EARLIEST_DATE
    pupil_id_pattern: str = DEFAULT_PUPIL_ID_PATTERN
    # recorded_at_floor as the instant it starts (UTC), worked out once rather than per mark.
    floor_instant: dt.datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "floor_instant",
                           dt.datetime.combine(self.recorded_at_floor, dt.time(0), tzinfo=dt.timezone.utc))


DEFAULT_LIMITS = MarkLimits()


class MarkRejected(ValueError):
    """A mark that cannot be used, with the first reason found."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def shown(value: Any) -> str:
    """A value as a rejection detail may quote it: short, and never an exception of its own
    (repr of a huge int raises ValueError, of a deeply nested list RecursionError)."""
    if isinstance(value, str):
        return repr(value[:_MAX_SHORT_FIELD]) + ("..." if len(value) > _MAX_SHORT_FIELD else "")
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if -10**18 < value < 10**18 else "a very large integer"
    return f"a {type(value).__name__}"


_PATTERNS: dict[str, re.Pattern[str]] = {}


def compiled_pattern(pattern: str) -> re.Pattern[str]:
    """A configured pattern compiled once (limits carry the text, so they stay hashable and comparable)."""
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        if len(_PATTERNS) >= 64:
            _PATTERNS.clear()
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


# Each check raises PydanticCustomError whose type is the RejectReason: the pydantic model and
# the fast parser below share them, so there is one definition of a valid mark.

def check_schema_version(value: Any) -> int:
    if isinstance(value, bool):
        supported = False
    elif isinstance(value, int):
        supported = value == SCHEMA_VERSION  # never str(): a huge int cannot be printed
    elif isinstance(value, str):
        supported = value.strip() == str(SCHEMA_VERSION)
    else:
        supported = False
    if not supported:
        raise PydanticCustomError(
            RejectReason.UNSUPPORTED_SCHEMA_VERSION.value,
            "schema_version {got} is not supported (this worker reads version {want})",
            {"got": shown(value), "want": SCHEMA_VERSION},
        )
    return SCHEMA_VERSION


def check_id(value: Any, what: str) -> str:
    """An id of the generic shape; the value itself is never quoted (it may be a name)."""
    if not isinstance(value, str):
        raise PydanticCustomError(RejectReason.MALFORMED_ID.value, f"{what} must be a string")
    # Only blanks are trimmed: other whitespace and control characters are corruption, not padding.
    value = value.strip(" \t")
    if value == "":
        raise PydanticCustomError(RejectReason.EMPTY_ID.value, f"{what} is empty")
    if not ID_PATTERN.fullmatch(value):
        if CONTROL_CHARACTERS.search(value):
            problem = "contains a control character"
        elif len(value) > 64:
            problem = "is longer than 64 characters"
        else:
            problem = "has a character other than letters, digits, '-' or '_'"
        raise PydanticCustomError(
            RejectReason.MALFORMED_ID.value,
            f"{what} {problem}: it must be 1 to 64 letters, digits, '-' or '_' (a pseudonym, never a name)",
        )
    return value


# Ids and codes repeat endlessly in a register: the verdict on a value once accepted is kept
# (accepted values only, at most 64 characters each, and the caches are bounded).
_CACHE_LIMIT = 65_536
_ACCEPTED_PUPIL_IDS: dict[tuple[str, str], str] = {}
_ACCEPTED_SCHOOL_IDS: dict[str, str] = {}
_ACCEPTED_CODES: dict[str, str] = {}


def _remember(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def check_pupil_id(value: Any, pattern: str) -> str:
    """The generic id shape, then the configured pupil-id pattern in full (it narrows, never widens)."""
    if type(value) is str and (accepted := _ACCEPTED_PUPIL_IDS.get((value, pattern))) is not None:
        return accepted
    if isinstance(value, str):
        candidate = value.strip(" \t")
        # The default pattern implies the generic shape, so one regex settles a valid id.
        if candidate and compiled_pattern(pattern).fullmatch(candidate) is not None and (
                pattern == DEFAULT_PUPIL_ID_PATTERN or ID_PATTERN.fullmatch(candidate) is not None):
            if type(value) is str and len(value) <= 64:
                _remember(_ACCEPTED_PUPIL_IDS, (value, pattern), candidate)
            return candidate
    check_id(value, "pupil_id")  # the precise problem with the generic shape, if there is one
    raise PydanticCustomError(
        RejectReason.MALFORMED_ID.value,
        "pupil_id does not match the pupil-id pattern (RECONNECT_PUPIL_ID_PATTERN; by default a pseudonym "
        "needs at least one digit, so a name is refused)",
    )


def _calendar_date(text: str) -> dt.date:
    if len(text) != 10:
        raise PydanticCustomError(RejectReason.INVALID_DATE.value, "date {got} is not in YYYY-MM-DD form",
                                  {"got": shown(text)})
    return _cached_calendar_date(text)


@lru_cache(maxsize=4096)
def _cached_calendar_date(text: str) -> dt.date:
    """A register's dates repeat endlessly: parse each spelling once (ten characters, so the
    cache stays small whatever a hostile sender tries)."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise PydanticCustomError(
            RejectReason.INVALID_DATE.value, "date {got} is not a real calendar date", {"got": repr(text)}
        ) from None


def check_date(value: Any, today: dt.date, max_future_days: int | None) -> dt.date:
    if isinstance(value, dt.datetime):
        raise PydanticCustomError(RejectReason.INVALID_DATE.value, "date must be a calendar date, not a timestamp")
    if isinstance(value, dt.date):
        day = value
    elif isinstance(value, str):
        day = _calendar_date(value.strip())
    else:
        raise PydanticCustomError(
            RejectReason.INVALID_DATE.value, "date must be text in YYYY-MM-DD form, not {got}", {"got": shown(value)}
        )
    if day < EARLIEST_DATE:
        raise PydanticCustomError(
            RejectReason.IMPLAUSIBLE_DATE.value, "date {got} is before {earliest}",
            {"got": day.isoformat(), "earliest": EARLIEST_DATE.isoformat()},
        )
    if max_future_days is not None and (day - today).days > max_future_days:
        raise PydanticCustomError(
            RejectReason.FUTURE_DATE.value, "date {got} is more than {days} days ahead of {today}",
            {"got": day.isoformat(), "days": max_future_days, "today": today.isoformat()},
        )
    return day


_SESSIONS = {"AM": Session.AM, "PM": Session.PM}


def check_session(value: Any) -> Session:
    session = (_SESSIONS.get(value.strip().upper())
               if isinstance(value, str) and len(value) <= _MAX_SHORT_FIELD else None)
    if session is None:
        raise PydanticCustomError(
            RejectReason.UNKNOWN_SESSION.value, "session must be AM or PM, not {got}", {"got": shown(value)}
        )
    return session


def check_code(value: Any) -> str:
    if type(value) is str and (accepted := _ACCEPTED_CODES.get(value)) is not None:
        return accepted
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise PydanticCustomError(RejectReason.UNKNOWN_CODE.value, "code must be text, not {got}", {"got": shown(value)})
    if len(value) > _MAX_SHORT_FIELD:
        raise PydanticCustomError(RejectReason.UNKNOWN_CODE.value, "code {got} is not an attendance code",
                                  {"got": shown(value)})
    try:
        code, _note = resolve(value)
    except RegisterNotTakenError as exc:
        raise PydanticCustomError(RejectReason.REGISTER_NOT_TAKEN.value, str(exc)) from None
    except UnknownCodeError as exc:
        raise PydanticCustomError(RejectReason.UNKNOWN_CODE.value, str(exc)) from None
    if type(value) is str:
        _remember(_ACCEPTED_CODES, value, code.code)
    return code.code


class _Clock:
    """The real clock as the recorded_at bound reads it, with a cached reading: time only moves
    forward, so a stamp no later than an earlier reading plus the skew is no later than now plus
    the skew. Most stamps are in the past and never read the clock at all."""

    __slots__ = ("reading",)

    def __init__(self) -> None:
        self.reading = dt.datetime.now(dt.timezone.utc)

    def read(self) -> dt.datetime:
        self.reading = dt.datetime.now(dt.timezone.utc)
        return self.reading


_CLOCK = _Clock()


def check_recorded_at(value: Any, now: dt.datetime | None, limits: MarkLimits) -> dt.datetime:
    """An aware UTC timestamp between the configured floor and now plus the allowed skew (`now`
    None: the real clock).

    The range is checked before converting to UTC: aware comparisons cannot overflow, while
    `astimezone` does for 9999-12-31T23:59:59-12:00 (and for year 1 with a positive offset).
    """
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            stamp = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise PydanticCustomError(
                RejectReason.INVALID_RECORDED_AT.value, "recorded_at {got} is not an ISO 8601 timestamp",
                {"got": shown(value)},
            ) from None
    else:
        raise PydanticCustomError(
            RejectReason.INVALID_RECORDED_AT.value, "recorded_at must be an ISO 8601 timestamp, not {got}",
            {"got": shown(value)}
        )
    zone = stamp.tzinfo
    if zone is None or (zone is not dt.timezone.utc and stamp.utcoffset() is None):
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    if stamp < limits.floor_instant:
        raise PydanticCustomError(
            RejectReason.IMPLAUSIBLE_RECORDED_AT.value, "recorded_at {got} is before {floor}",
            {"got": shown(value if isinstance(value, str) else stamp.isoformat()),
             "floor": limits.recorded_at_floor.isoformat()},
        )
    skew = limits.recorded_at_max_skew
    if now is None:
        now = _CLOCK.reading
        if stamp > now + skew:
            now = _CLOCK.read()
    elif now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    if stamp > now + skew:
        raise PydanticCustomError(
            RejectReason.FUTURE_RECORDED_AT.value,
            "recorded_at {got} is later than now ({now}) plus the allowed clock skew of {skew} s; a "
            "recording from the future would win over every later genuine correction",
            {"got": shown(value if isinstance(value, str) else stamp.isoformat()),
             "now": now.isoformat(timespec="seconds"), "skew": int(skew.total_seconds())},
        )
    return stamp if stamp.tzinfo is dt.timezone.utc else stamp.astimezone(dt.timezone.utc)


def check_original_code(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PydanticCustomError(RejectReason.INVALID_FIELD.value, "original_code must be text, not {got}",
                              {"got": shown(value)})


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context or {}


class RegisterMark(BaseModel):
    """One register mark: a pupil, a school day, a session and the DfE code recorded.

    Validated with a context of `today`, `now` and `limits` (a `MarkLimits`); without one the
    real clock and the default limits apply.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    schema_version: int = Field(SCHEMA_VERSION, description="Contract major version; only 1 is understood.")
    school_id: str = Field(description="Pseudonymous school id: 1-64 of [A-Za-z0-9_-].")
    pupil_id: str = Field(
        description="Pseudonymous pupil id (a trust pseudonymises UPNs before export): 1-64 of [A-Za-z0-9_-] "
        "that also matches the configured pupil-id pattern (by default: at least one digit).")
    date: dt.date = Field(description="The school day, ISO 8601 (YYYY-MM-DD).")
    session: Session = Field(description="AM or PM register.")
    code: str = Field(description="A 2024 DfE attendance code, e.g. '/', '\\\\', 'L', 'I', 'N'.")
    recorded_at: dt.datetime = Field(
        description="When the mark was recorded or last amended (ISO 8601; without an offset, UTC). "
        "The latest recording of a (pupil, date, session) wins. Not before the configured floor "
        "(2000-01-01) and not later than now plus a small clock skew (15 minutes)."
    )
    original_code: str | None = Field(
        None, description="Set when a withdrawn pre-2024 code (H, J, Y) was mapped; the code as exported."
    )

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> int:
        return check_schema_version(value)

    @field_validator("school_id", mode="before")
    @classmethod
    def _school_id(cls, value: Any) -> str:
        return check_id(value, "school_id")

    @field_validator("pupil_id", mode="before")
    @classmethod
    def _pupil_id(cls, value: Any, info: ValidationInfo) -> str:
        return check_pupil_id(value, _context(info).get("limits", DEFAULT_LIMITS).pupil_id_pattern)

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any, info: ValidationInfo) -> dt.date:
        context = _context(info)
        return check_date(value, context.get("today") or dt.date.today(),
                          context.get("limits", DEFAULT_LIMITS).max_future_days)

    @field_validator("session", mode="before")
    @classmethod
    def _session(cls, value: Any) -> Session:
        return check_session(value)

    @field_validator("code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> str:
        return check_code(value)

    @field_validator("recorded_at", mode="before")
    @classmethod
    def _recorded_at(cls, value: Any, info: ValidationInfo) -> dt.datetime:
        context = _context(info)
        return check_recorded_at(value, context.get("now"), context.get("limits", DEFAULT_LIMITS))

    @field_validator("original_code", mode="before")
    @classmethod
    def _original_code(cls, value: Any) -> str | None:
        return check_original_code(value)

    @classmethod
    def from_checked(cls, **values: Any) -> RegisterMark:
        """A mark from values that already passed the check_* functions (the hot path).

        Equivalent to model_construct with every field set (a property test holds the two
        paths equal) at a third of its cost, which matters at thousands of marks a second.
        """
        mark = cls.__new__(cls)
        object.__setattr__(mark, "__dict__", values)
        object.__setattr__(mark, "__pydantic_fields_set__", _ALL_FIELDS)
        object.__setattr__(mark, "__pydantic_extra__", None)
        object.__setattr__(mark, "__pydantic_private__", None)
        return mark

    @property
    def key(self) -> tuple[str, dt.date, Session]:
        return (self.pupil_id, self.date, self.session)

    def to_wire(self) -> bytes:
        """Compact JSON for the marks topic."""
        return self.model_dump_json(exclude_none=True).encode()


_ALL_FIELDS = frozenset(RegisterMark.model_fields)
_FIELD_REASONS = {
    "schema_version": RejectReason.UNSUPPORTED_SCHEMA_VERSION,
    "school_id": RejectReason.MALFORMED_ID,
    "pupil_id": RejectReason.MALFORMED_ID,
    "date": RejectReason.INVALID_DATE,
    "session": RejectReason.UNKNOWN_SESSION,
    "code": RejectReason.UNKNOWN_CODE,
    "recorded_at": RejectReason.INVALID_RECORDED_AT,
}
_KNOWN_REASONS = {reason.value for reason in RejectReason}


def rejection_from(error: ValidationError) -> MarkRejected:
    """The first problem of a pydantic error, as a precise reject reason."""
    first = error.errors(include_url=False)[0]
    field = str(first["loc"][0]) if first.get("loc") else ""
    if first["type"] in _KNOWN_REASONS:
        reason = RejectReason(first["type"])
    elif first["type"] == "missing":
        reason = RejectReason.MISSING_FIELD
    elif first["type"] in ("json_invalid", "json_type", "model_type", "model_attributes_type"):
        reason = RejectReason.INVALID_JSON
    else:
        reason = _FIELD_REASONS.get(field, RejectReason.INVALID_FIELD)
    where = f"{field}: " if field else ""
    return MarkRejected(reason, f"{where}{first['msg']}")


_MISSING = object()


def _missing(field: str) -> MarkRejected:
    return MarkRejected(RejectReason.MISSING_FIELD, f"{field}: Field required")


def parse_mark(data: dict[str, Any], *, limits: MarkLimits = DEFAULT_LIMITS, today: dt.date | None = None,
               now: dt.datetime | None = None) -> RegisterMark:
    """Validate a mark from a mapping (a CSV row or decoded JSON); raises MarkRejected, only.

    The hot path of ingest, replay and the worker: the same checks as RegisterMark's
    validators, in the model's field order (so the first reason is the model's first error),
    called directly, then a construct without re-validation. `today` bounds `date`, `now`
    bounds `recorded_at`; both default to the real clock.
    """
    if not isinstance(data, dict):
        raise MarkRejected(RejectReason.INVALID_JSON, f"a mark must be a JSON object, not {shown(data)}")
    get = data.get
    field = "schema_version"
    try:
        version = check_schema_version(get("schema_version", SCHEMA_VERSION))
        field = "school_id"
        if (value := get(field, _MISSING)) is _MISSING:
            raise _missing(field)
        school_id = _ACCEPTED_SCHOOL_IDS.get(value) if type(value) is str else None
        if school_id is None:
            school_id = check_id(value, field)
            if type(value) is str and len(value) <= 64:
                _remember(_ACCEPTED_SCHOOL_IDS, value, school_id)
        field = "pupil_id"
        if (value := get(field, _MISSING)) is _MISSING:
            raise _missing(field)
        pupil_id = check_pupil_id(value, limits.pupil_id_pattern)
        field = "date"
        if (value := get(field, _MISSING)) is _MISSING:
            raise _missing(field)
        day = check_date(value, today or dt.date.today(), limits.max_future_days)
        field = "session"
        if (value := get(field, _MISSING)) is _MISSING:
            raise _missing(field)
        session = check_session(value)
        field = "code"
        if (raw_code := get(field, _MISSING)) is _MISSING:
            raise _missing(field)
        code = check_code(raw_code)
        field = "recorded_at"
        if (value := get(field, _MISSING)) is _MISSING:
            raise _missing(field)
        recorded_at = check_recorded_at(value, now, limits)
        field = "original_code"
        supplied = check_original_code(get(field))
    except PydanticCustomError as error:
        raise MarkRejected(RejectReason(error.type), f"{field}: {error.message()}") from None
    exported = normalise_code(raw_code) if isinstance(raw_code, str) else None
    original = supplied if supplied in WITHDRAWN_NOTES else (exported if exported and exported != code else None)
    return RegisterMark.from_checked(
        schema_version=version, school_id=school_id, pupil_id=pupil_id, date=day, session=session, code=code,
        recorded_at=recorded_at, original_code=original,
    )


# -- JSON with bounds ------------------------------------------------------------------------

# A JSON string (escapes included), so brackets inside strings do not count as nesting.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply JSON text nests arrays and objects, by a scan of its brackets (no recursion,
    linear in the text). Brackets of an unterminated string count: such text is not JSON anyway."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def check_json_depth(text: str, max_depth: int) -> None:
    # Counting the opening brackets is an upper bound on the depth, and a mark has one.
    if text.count("{") + text.count("[") <= max_depth:
        return
    depth = json_depth(text)
    if depth > max_depth:
        raise MarkRejected(RejectReason.JSON_TOO_DEEP, f"JSON nests {depth} levels deep; the limit is {max_depth}")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise MarkRejected(RejectReason.DUPLICATE_KEY, f"key {shown(duplicate)} appears more than once")
    return data


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise MarkRejected(RejectReason.NUMBER_OUT_OF_RANGE, f"a number of {len(text)} characters is too long")
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise MarkRejected(RejectReason.NUMBER_OUT_OF_RANGE, f"a number of {len(text)} characters is too long")
    value = float(text)
    if not math.isfinite(value):
        raise MarkRejected(RejectReason.NUMBER_OUT_OF_RANGE, f"{text[:MAX_NUMBER_CHARS]} is out of range")
    return value


def _json_constant(name: str) -> float:
    raise MarkRejected(RejectReason.NUMBER_OUT_OF_RANGE, f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_json_object, parse_int=_json_int, parse_float=_json_float,
                            parse_constant=_json_constant)


# The compact form marks are published in (`RegisterMark.to_wire`: fields in the model's order,
# no whitespace) with plain ASCII strings: no control characters and no escape but an escaped
# backslash (the PM code), hence no nesting and no repeated key. A payload of exactly this form
# decodes to the same dict the general parser below returns, without the parser; anything else
# takes the general path.
_PLAIN = rb'"([\x20\x21\x23-\x7e]*)"'  # a backslash is let through here and checked below
_CANONICAL_MARK = re.compile(
    rb'\{(?:"schema_version":(1),)?"school_id":' + _PLAIN + rb',"pupil_id":' + _PLAIN + rb',"date":' + _PLAIN
    + rb',"session":' + _PLAIN + rb',"code":' + _PLAIN + rb',"recorded_at":' + _PLAIN
    + rb'(?:,"original_code":' + _PLAIN + rb')?\}')
_CANONICAL_FIELDS = ("school_id", "pupil_id", "date", "session", "code", "recorded_at")


def _canonical_mark(payload: bytes) -> dict[str, Any] | None:
    match = _CANONICAL_MARK.fullmatch(payload)
    if match is None:
        return None
    groups = match.groups()
    data: dict[str, Any] = {"schema_version": 1} if groups[0] is not None else {}
    for name, raw in zip(_CANONICAL_FIELDS + ("original_code",), groups[1:]):
        if raw is not None:
            if (text := _plain_text(raw)) is None:
                return None
            data[name] = text
    return data


def _plain_text(raw: bytes) -> str | None:
    """The JSON string `raw` (without its quotes) when its only escapes are escaped backslashes;
    None for any other escape, including one that escapes the closing quote."""
    text = raw.decode("ascii")
    if "\\" not in text:
        return text
    if "\\" in text.replace("\\\\", ""):
        return None
    return text.replace("\\\\", "\\")


def decode_json(payload: bytes | bytearray | memoryview | str | None, limits: MarkLimits = DEFAULT_LIMITS) -> Any:
    """A message's JSON value, within the limits; raises MarkRejected, only.

    Order: presence, size, encoding, nesting (on the text, so `[[[[...` thousands deep never
    reaches the recursive parser), then the parse with bounded numbers and unique keys.
    """
    if type(payload) is bytes:  # the usual case first
        size = len(payload)
    elif payload is None:
        raise MarkRejected(RejectReason.EMPTY_PAYLOAD, "the message has no value (a tombstone); a mark is a JSON object")
    elif isinstance(payload, str):
        size = len(payload.encode("utf-8", "surrogatepass"))
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        payload = bytes(payload)
        size = len(payload)
    else:
        raise MarkRejected(RejectReason.INVALID_ENCODING, f"a message must be bytes, not {shown(payload)}")
    if size == 0:
        raise MarkRejected(RejectReason.EMPTY_PAYLOAD, "the message is empty; a mark is a JSON object")
    if limits.max_message_bytes is not None and size > limits.max_message_bytes:
        raise MarkRejected(RejectReason.PAYLOAD_TOO_LARGE,
                           f"message is {size} bytes; the limit is {limits.max_message_bytes}")
    if type(payload) is bytes and (canonical := _canonical_mark(payload)) is not None:
        return canonical
    if isinstance(payload, str):
        text = payload
    else:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MarkRejected(RejectReason.INVALID_ENCODING,
                               f"message is not UTF-8 ({exc.reason} at byte {exc.start + 1} of {size})") from None
    check_json_depth(text, limits.max_json_depth)
    try:
        return _DECODER.decode(text)
    except MarkRejected:
        raise
    except RecursionError:  # unreachable after the depth check; kept so no input can escape as a crash
        raise MarkRejected(RejectReason.JSON_TOO_DEEP, "JSON nests too deeply to parse") from None
    except ValueError as exc:
        raise MarkRejected(RejectReason.INVALID_JSON, f"message is not JSON: {exc}") from None


def parse_mark_json(payload: bytes | None, *, limits: MarkLimits = DEFAULT_LIMITS, today: dt.date | None = None,
                    now: dt.datetime | None = None) -> RegisterMark:
    """Validate a mark from a topic message (None for a tombstone); raises MarkRejected, only."""
    return parse_mark(decode_json(payload, limits), limits=limits, today=today, now=now)
