"""The caseload's database tables (SQLAlchemy 2), the same on SQLite and PostgreSQL.

The migrations in caseload/migrations create exactly these; a test compares the two.

What is stored where:
* `staff`, `staff_school`, `staff_session`, `signin_failure`: accounts, their schools, live
  sign-ins (only a hash of each session token) and recent failed sign-ins for rate limiting.
* `pupil_case`, `case_event`, `case_action`: one case per pupil per episode, every intervention
  event attached to it (by its idempotency key), and what staff recorded.
* `pupil_year`: each pupil's register for one academic year, one slot per session (latest
  recording wins), for the session grid and chart.
* `pupil_name`: display names imported by the trust. Local only: never published or logged.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LENGTH = 64  # pseudonyms, school ids, event and outcome ids
ROLE_LENGTH = 40
NOTE_LENGTH = 280

# Constraint names fixed by convention, so migrations name them the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and read back as an aware UTC datetime, on every database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(ROLE_LENGTH))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class StaffSchool(Base):
    __tablename__ = "staff_school"

    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    school_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)


class StaffSession(Base):
    """A live sign-in. The cookie holds a random token; only its SHA-256 is stored here."""

    __tablename__ = "staff_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class SigninFailure(Base):
    """A failed sign-in: by the account name tried (lower case) and the client address."""

    __tablename__ = "signin_failure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(ID_LENGTH))
    client: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_signin_failure_account_at", "account", "at"),
        Index("ix_signin_failure_client_at", "client", "at"),
    )


class PupilCase(Base):
    """One pupil's episode: opened by a concern (or health needs), worked, closed.

    `track` separates attendance cases (concern, improving) from health-needs cases; `kind` is
    the kind of the latest event. Urgency is tier (highest first), then the longest wait.
    """

    __tablename__ = "pupil_case"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pupil_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    school_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    track: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    is_open: Mapped[bool] = mapped_column(Boolean)
    tier: Mapped[int] = mapped_column(Integer)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    waiting_since: Mapped[dt.date] = mapped_column(Date)
    # Urgency order as one integer (see caseload.store.urgency_key): keyset pages seek on it.
    urgency_key: Mapped[int] = mapped_column(BigInteger)
    last_event_on: Mapped[dt.date] = mapped_column(Date)
    assigned_role: Mapped[str | None] = mapped_column(String(ROLE_LENGTH), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        # The caseload page: keyset pagination in urgency order, over all of a staff member's
        # schools or one school, open cases or all.
        Index("ix_pupil_case_urgency", "is_open", "urgency_key"),
        Index("ix_pupil_case_school_urgency", "school_id", "is_open", "urgency_key"),
        Index("ix_pupil_case_pupil_track_open", "pupil_id", "track", "is_open"),
    )


class CaseEvent(Base):
    """An intervention event as received, attached to its case. The event id is the idempotency key."""

    __tablename__ = "case_event"

    event_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("pupil_case.id", ondelete="CASCADE"), index=True)
    pupil_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    school_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    as_of: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    tier: Mapped[int] = mapped_column(Integer)
    escalation: Mapped[bool] = mapped_column(Boolean)
    risk_score: Mapped[float] = mapped_column(Float)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CaseAction(Base):
    """What staff recorded on a case: an outcome (also published as an OutcomeEvent) or an assignment.

    Outcomes wait here until they are on the outcomes topic (`published_at`): a broker outage
    when staff press the button loses nothing.
    """

    __tablename__ = "case_action"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("pupil_case.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(ROLE_LENGTH))
    assigned_role: Mapped[str | None] = mapped_column(String(ROLE_LENGTH), nullable=True)
    note: Mapped[str | None] = mapped_column(String(NOTE_LENGTH), nullable=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"), nullable=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    outcome_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), unique=True, nullable=True)
    outcome_payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (Index("ix_case_action_unpublished", "published_at", "id"),)


class PupilYear(Base):
    """A pupil's register for one academic year (1 August to 31 July): one code byte and one
    four-byte recording stamp per session slot, slot = 2 * (days since 1 August) + (PM)."""

    __tablename__ = "pupil_year"

    pupil_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    academic_year: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    last_date: Mapped[dt.date] = mapped_column(Date)
    codes: Mapped[bytes] = mapped_column(LargeBinary)
    stamps: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class PupilName(Base):
    """Who a pseudonym is, for staff: imported by the trust, never leaves this database."""

    __tablename__ = "pupil_name"

    pupil_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    year_group: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    tutor_group: Mapped[str | None] = mapped_column(String(32), nullable=True)
    imported_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
