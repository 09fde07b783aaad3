"""What the caseload keeps and how it changes: cases from events, registers from marks, staff records.

Every function takes an open SQLAlchemy session and leaves committing to the caller, so one
batch of Kafka records (or one form post) is one transaction.

Cases: one per pupil per episode and track. A concern for a pupil with an open attendance
case attaches to it (a higher tier raises the case's tier and marks it escalated); `improving`
attaches to the open case (or, when staff already closed it, to the latest one as history);
`health_needs` opens or attaches to the pupil's health case. Redelivered events change
nothing: the event id is the key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from caseload.register import PupilYearRecord, academic_year
from caseload.tables import CaseAction, CaseEvent, PupilCase, PupilName, PupilYear
from schemas.events import InterventionEvent, InterventionKind
from schemas.marks import RegisterMark
from schemas.outcomes import OutcomeAction, OutcomeEvent, StaffRole


class Track(StrEnum):
    ATTENDANCE = "attendance"  # concern and improving
    HEALTH = "health"  # health_needs


class CaseStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_SUPPORT = "in_support"
    CLOSED = "closed"


STATUS_TEXT = {
    CaseStatus.NEW: "new",
    CaseStatus.ACKNOWLEDGED: "acknowledged",
    CaseStatus.IN_SUPPORT: "in support",
    CaseStatus.CLOSED: "closed",
}
KIND_TEXT = {
    InterventionKind.CONCERN: "concern",
    InterventionKind.IMPROVING: "improving",
    InterventionKind.HEALTH_NEEDS: "health needs",
}
# An assignment is recorded beside the outcomes but is not one: it stays in the caseload.
ASSIGNED = "assigned"


# urgency_key packs (tier, highest first; waiting since, oldest first; case id) into one integer,
# so the caseload's order is one indexed column and a page boundary one comparison. A case whose
# latest news is `improving` sorts after every concern: the pupil has recovered.
_TIER_STEP = 10**15
_DAY_STEP = 10**9  # ids below a billion; day ordinals below a million


def urgency_key(tier: int, waiting_since: dt.date, case_id: int, *, improving: bool = False) -> int:
    if not 1 <= tier <= 3 or not 0 <= case_id < _DAY_STEP:
        raise ValueError("tier must be 1-3 and the case id below a billion")
    rank = 3 if improving else 3 - tier
    return rank * _TIER_STEP + waiting_since.toordinal() * _DAY_STEP + case_id


def _rekey(case: PupilCase) -> None:
    case.urgency_key = urgency_key(case.tier, case.waiting_since, case.id,
                                   improving=case.kind == InterventionKind.IMPROVING.value)


def track_of(kind: InterventionKind) -> Track:
    return Track.HEALTH if kind is InterventionKind.HEALTH_NEEDS else Track.ATTENDANCE


class EventResult(StrEnum):
    OPENED = "opened"
    ATTACHED = "attached"
    DUPLICATE = "duplicate"


def apply_event(session: Session, event: InterventionEvent, payload: str, now: dt.datetime) -> EventResult:
    """File one intervention event under its case (opening one when needed). Idempotent by event id."""
    if session.get(CaseEvent, event.event_id) is not None:
        return EventResult.DUPLICATE
    track = track_of(event.kind)
    case = session.scalars(
        select(PupilCase).where(PupilCase.pupil_id == event.pupil_id, PupilCase.track == track.value,
                                PupilCase.is_open.is_(True)).order_by(PupilCase.id.desc()).limit(1)
    ).first()
    result = EventResult.ATTACHED
    if case is None and event.kind is InterventionKind.IMPROVING:
        # Staff closed the case before the pupil recovered: the good news joins its history.
        case = session.scalars(
            select(PupilCase).where(PupilCase.pupil_id == event.pupil_id, PupilCase.track == track.value)
            .order_by(PupilCase.id.desc()).limit(1)
        ).first()
        if case is not None:
            _add_event(session, case, event, payload, now)
            return result
    if case is None:
        case = PupilCase(
            pupil_id=event.pupil_id, school_id=event.school_id, track=track.value, kind=event.kind.value,
            status=CaseStatus.NEW.value, is_open=True, tier=int(event.tier), escalated=False,
            waiting_since=event.as_of, urgency_key=0, last_event_on=event.as_of, assigned_role=None,
            created_at=now, updated_at=now, closed_at=None,
        )
        session.add(case)
        session.flush()  # the id is part of the urgency key
        _rekey(case)
        result = EventResult.OPENED
    else:
        if event.kind is not InterventionKind.IMPROVING and int(event.tier) > case.tier:
            case.tier = int(event.tier)
            case.escalated = True
        case.escalated = case.escalated or event.escalation
        case.kind = event.kind.value
        case.school_id = event.school_id  # the case follows the pupil to their current school
        case.last_event_on = max(case.last_event_on, event.as_of)
        case.updated_at = now
        _rekey(case)
    _add_event(session, case, event, payload, now)
    return result


def _add_event(session: Session, case: PupilCase, event: InterventionEvent, payload: str, now: dt.datetime) -> None:
    session.add(CaseEvent(
        event_id=event.event_id, case_id=case.id, pupil_id=event.pupil_id, school_id=event.school_id,
        as_of=event.as_of, kind=event.kind.value, tier=int(event.tier), escalation=event.escalation,
        risk_score=event.risk_score, payload=payload, received_at=now,
    ))


# -- register marks -------------------------------------------------------------------------------

def apply_marks(session: Session, marks: Sequence[RegisterMark], now: dt.datetime) -> Counter[str]:
    """Apply valid marks to each pupil's year record (latest recording wins); counts by result."""
    counts: Counter[str] = Counter()
    if not marks:
        return counts
    keys = {(mark.pupil_id, academic_year(mark.date)) for mark in marks}
    rows: dict[tuple[str, int], PupilYear] = {}
    pupils = sorted({pupil for pupil, _ in keys})
    for start in range(0, len(pupils), 500):
        chunk = pupils[start:start + 500]
        for row in session.scalars(select(PupilYear).where(PupilYear.pupil_id.in_(chunk))):
            if (row.pupil_id, row.academic_year) in keys:
                rows[(row.pupil_id, row.academic_year)] = row
    records: dict[tuple[str, int], PupilYearRecord] = {}
    for mark in marks:
        key = (mark.pupil_id, academic_year(mark.date))
        record = records.get(key)
        if record is None:
            row = rows.get(key)
            record = PupilYearRecord(key[1], row.codes, row.stamps) if row else PupilYearRecord(key[1])
            records[key] = record
            if row is None:
                row = rows[key] = PupilYear(pupil_id=key[0], academic_year=key[1], school_id=mark.school_id,
                                            last_date=mark.date, codes=b"", stamps=b"", updated_at=now)
                session.add(row)
        counts[record.apply(mark).value] += 1
        row = rows[key]
        if mark.date >= row.last_date:
            row.last_date, row.school_id = mark.date, mark.school_id
    for key, record in records.items():
        row = rows[key]
        row.codes, row.stamps, row.updated_at = bytes(record.codes), record.stamps_bytes(), now
    return counts


def pupil_years(session: Session, pupil_id: str) -> dict[int, PupilYearRecord]:
    return {row.academic_year: PupilYearRecord(row.academic_year, row.codes, row.stamps)
            for row in session.scalars(select(PupilYear).where(PupilYear.pupil_id == pupil_id))}


# -- what staff record ----------------------------------------------------------------------------

STATUS_AFTER: dict[OutcomeAction, CaseStatus] = {
    OutcomeAction.ACKNOWLEDGED: CaseStatus.ACKNOWLEDGED,
    OutcomeAction.SPOKE_WITH_FAMILY: CaseStatus.ACKNOWLEDGED,
    OutcomeAction.SUPPORT_PLAN_STARTED: CaseStatus.IN_SUPPORT,
    OutcomeAction.SUPPORT_PLAN_CLOSED: CaseStatus.ACKNOWLEDGED,
    OutcomeAction.CLOSED: CaseStatus.CLOSED,
}


class CaseClosedError(ValueError):
    """Nothing more can be recorded on a closed case."""


class DuplicateSubmission(ValueError):
    """The same form was submitted twice (same outcome id): recorded once."""


def latest_event(session: Session, case_id: int) -> CaseEvent | None:
    return session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case_id)
        .order_by(CaseEvent.as_of.desc(), CaseEvent.received_at.desc()).limit(1)
    ).first()


def record_outcome(session: Session, case: PupilCase, *, action: OutcomeAction, role: StaffRole,
                   note: str | None, outcome_id: str, staff_id: int | None, now: dt.datetime) -> CaseAction:
    """Record what staff did: the case moves on, and an OutcomeEvent waits in the outbox for the topic.

    Raises pydantic.ValidationError for a note that breaks the note rules, CaseClosedError,
    DuplicateSubmission when this outcome id is already recorded for this case.
    """
    existing = session.scalars(select(CaseAction).where(CaseAction.outcome_id == outcome_id)).first()
    if existing is not None:
        if existing.case_id != case.id:
            raise ValueError("that form token belongs to another case")
        raise DuplicateSubmission(outcome_id)
    if not case.is_open:
        raise CaseClosedError("this case is closed")
    event = latest_event(session, case.id)
    outcome = OutcomeEvent(
        outcome_id=outcome_id, pupil_id=case.pupil_id, school_id=case.school_id,
        intervention_event_id=event.event_id if event else None, action=action, recorded_at=now,
        recorded_by_role=role, note=note,
    )
    status = STATUS_AFTER[action]
    if not (action in (OutcomeAction.ACKNOWLEDGED, OutcomeAction.SPOKE_WITH_FAMILY)
            and case.status == CaseStatus.IN_SUPPORT.value):
        case.status = status.value  # acknowledging a case in support does not take it out of support
    case.is_open = status is not CaseStatus.CLOSED
    case.closed_at = now if status is CaseStatus.CLOSED else None
    case.updated_at = now
    row = CaseAction(case_id=case.id, action=action.value, role=role.value, note=outcome.note, staff_id=staff_id,
                     recorded_at=now, outcome_id=outcome.outcome_id, outcome_payload=outcome.to_wire().decode(),
                     published_at=None)
    session.add(row)
    session.flush()
    return row


def assign_case(session: Session, case: PupilCase, *, assigned_role: StaffRole, role: StaffRole,
                staff_id: int | None, now: dt.datetime) -> CaseAction:
    if not case.is_open:
        raise CaseClosedError("this case is closed")
    case.assigned_role = assigned_role.value
    case.updated_at = now
    row = CaseAction(case_id=case.id, action=ASSIGNED, role=role.value, assigned_role=assigned_role.value,
                     note=None, staff_id=staff_id, recorded_at=now)
    session.add(row)
    session.flush()
    return row


def unpublished_outcomes(session: Session, limit: int = 100) -> list[CaseAction]:
    return list(session.scalars(
        select(CaseAction).where(CaseAction.outcome_id.is_not(None), CaseAction.published_at.is_(None))
        .order_by(CaseAction.id).limit(limit)
    ))


# -- the caseload page ----------------------------------------------------------------------------

OPEN = "open"
ANY = "all"
UNKNOWN_YEAR = "unknown"
_CURSOR = re.compile(r"\d{1,18}")


class FilterError(ValueError):
    """A filter value that is not one of the choices offered."""


@dataclass(frozen=True)
class CaseFilters:
    school: str | None = None
    year_group: str | None = None
    tier: int | None = None
    kind: InterventionKind | None = None
    status: str = OPEN  # "open", "all", or a CaseStatus value

    @classmethod
    def parse(cls, params: dict[str, str], schools: Iterable[str]) -> CaseFilters:
        school = params.get("school") or None
        if school is not None and school not in set(schools):
            raise FilterError("school")
        year = params.get("year") or None
        if year is not None and not re.fullmatch(r"[A-Za-z0-9 ]{1,8}", year):
            raise FilterError("year")
        tier_text = params.get("tier") or None
        if tier_text is not None and tier_text not in ("1", "2", "3"):
            raise FilterError("tier")
        kind_text = params.get("kind") or None
        try:
            kind = InterventionKind(kind_text) if kind_text else None
        except ValueError:
            raise FilterError("kind") from None
        status = params.get("status") or OPEN
        if status not in {OPEN, ANY, *(s.value for s in CaseStatus)}:
            raise FilterError("status")
        return cls(school, year, int(tier_text) if tier_text else None, kind, status)

    def query_params(self) -> dict[str, str]:
        params = {"school": self.school, "year": self.year_group, "tier": str(self.tier) if self.tier else None,
                  "kind": self.kind.value if self.kind else None,
                  "status": self.status if self.status != OPEN else None}
        return {key: value for key, value in params.items() if value}


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after this urgency key."""

    after: int

    def encode(self) -> str:
        return str(self.after)

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        if not text:
            return None
        if not _CURSOR.fullmatch(text):
            raise FilterError("after")
        return cls(int(text))


@dataclass(frozen=True)
class CaseRow:
    case_id: int
    urgency_key: int
    pupil_id: str
    display_name: str | None
    year_group: str | None
    tutor_group: str | None
    school_id: str
    kind: str
    tier: int
    status: str
    escalated: bool
    waiting_since: dt.date
    last_event_on: dt.date
    assigned_role: str | None
    headline: str

    def waited_days(self, today: dt.date) -> int:
        return max((today - self.waiting_since).days, 0)


@dataclass(frozen=True)
class CasePage:
    rows: list[CaseRow]
    total: int
    next_cursor: Cursor | None
    year_groups: list[str] = field(default_factory=list)


def _filtered(query, schools: Sequence[str], filters: CaseFilters):
    query = query.where(PupilCase.school_id.in_([filters.school] if filters.school else list(schools)))
    if filters.status == OPEN:
        query = query.where(PupilCase.is_open.is_(True))
    elif filters.status != ANY:
        # is_open as well, so the urgency indexes (which lead with it) serve every status.
        query = query.where(PupilCase.is_open.is_(filters.status != CaseStatus.CLOSED.value),
                            PupilCase.status == filters.status)
    if filters.tier is not None:
        query = query.where(PupilCase.tier == filters.tier)
    if filters.kind is not None:
        query = query.where(PupilCase.kind == filters.kind.value)
    if filters.year_group == UNKNOWN_YEAR:
        query = query.where(PupilName.year_group.is_(None))
    elif filters.year_group is not None:
        query = query.where(PupilName.year_group == filters.year_group)
    return query


def caseload_page(session: Session, schools: Sequence[str], filters: CaseFilters, cursor: Cursor | None,
                  page_size: int) -> CasePage:
    """One page of cases in urgency order (tier, highest first, recovered pupils last; then the longest
    wait), by keyset."""
    if not schools:
        return CasePage([], 0, None)
    joined = select(PupilCase, PupilName).outerjoin(PupilName, PupilName.pupil_id == PupilCase.pupil_id)
    query = _filtered(joined, schools, filters)
    if cursor is not None:
        query = query.where(PupilCase.urgency_key > cursor.after)  # keyset: strictly after the last row shown
    query = query.order_by(PupilCase.urgency_key).limit(page_size + 1)
    found = session.execute(query).all()
    more = len(found) > page_size
    found = found[:page_size]
    headlines = _headlines(session, [case.id for case, _ in found])
    rows = [CaseRow(
        case_id=case.id, urgency_key=case.urgency_key, pupil_id=case.pupil_id,
        display_name=name.display_name if name else None,
        year_group=name.year_group if name else None, tutor_group=name.tutor_group if name else None,
        school_id=case.school_id, kind=case.kind, tier=case.tier, status=case.status, escalated=case.escalated,
        waiting_since=case.waiting_since, last_event_on=case.last_event_on, assigned_role=case.assigned_role,
        headline=headlines.get(case.id, ""),
    ) for case, name in found]
    counted = select(func.count(PupilCase.id)).select_from(PupilCase)
    if filters.year_group is not None:  # names are only needed to count by year group
        counted = counted.outerjoin(PupilName, PupilName.pupil_id == PupilCase.pupil_id)
    total_query = _filtered(counted, schools, filters)
    total = session.execute(total_query).scalar_one()
    last = rows[-1] if rows else None
    next_cursor = Cursor(last.urgency_key) if more and last else None
    return CasePage(rows, total, next_cursor, year_groups(session, schools))


def _headlines(session: Session, case_ids: list[int]) -> dict[int, str]:
    """The first reason of each case's latest event, in its own words."""
    if not case_ids:
        return {}
    latest: dict[int, tuple[dt.date, dt.datetime, str]] = {}
    query = select(CaseEvent.case_id, CaseEvent.as_of, CaseEvent.received_at, CaseEvent.payload).where(
        CaseEvent.case_id.in_(case_ids))
    for case_id, as_of, received_at, payload in session.execute(query):
        held = latest.get(case_id)
        if held is None or (as_of, received_at) > held[:2]:
            latest[case_id] = (as_of, received_at, payload)
    headlines = {}
    for case_id, (_, _, payload) in latest.items():
        reasons = json.loads(payload).get("reasons") or [{}]
        headlines[case_id] = str(reasons[0].get("text", ""))
    return headlines


def year_groups(session: Session, schools: Sequence[str]) -> list[str]:
    """The year groups of pupils with cases in these schools (for the filter), in school order."""
    query = (select(PupilName.year_group).join(PupilCase, PupilCase.pupil_id == PupilName.pupil_id)
             .where(PupilCase.school_id.in_(list(schools)), PupilName.year_group.is_not(None)).distinct())
    found = [value for value in session.scalars(query) if value]
    return sorted(found, key=lambda y: (0, -1) if y.upper() == "R" else ((0, int(y)) if y.isdigit() else (1, y)))


# -- scope ----------------------------------------------------------------------------------------

def case_in_scope(session: Session, case_id: int, schools: Sequence[str]) -> PupilCase | None:
    """The case, if it belongs to one of these schools; None otherwise (the caller answers 404)."""
    case = session.get(PupilCase, case_id)
    return case if case is not None and case.school_id in set(schools) else None


def pupil_cases_in_scope(session: Session, pupil_id: str, schools: Sequence[str]) -> list[PupilCase]:
    """The pupil's cases, newest first, if any of them is in these schools; else none at all."""
    cases = list(session.scalars(select(PupilCase).where(PupilCase.pupil_id == pupil_id)
                                 .order_by(PupilCase.id.desc())))
    allowed = set(schools)
    return cases if any(case.school_id in allowed for case in cases) else []


def case_events(session: Session, case_ids: Sequence[int]) -> list[CaseEvent]:
    return list(session.scalars(select(CaseEvent).where(CaseEvent.case_id.in_(list(case_ids)))
                                .order_by(CaseEvent.as_of.desc(), CaseEvent.received_at.desc())))


def case_actions(session: Session, case_ids: Sequence[int]) -> list[CaseAction]:
    return list(session.scalars(select(CaseAction).where(CaseAction.case_id.in_(list(case_ids)))
                                .order_by(CaseAction.recorded_at.desc(), CaseAction.id.desc())))


def display_name(session: Session, pupil_id: str) -> PupilName | None:
    return session.get(PupilName, pupil_id)
