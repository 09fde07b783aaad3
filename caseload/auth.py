"""Staff accounts, sign-in and its rate limits, and server-side sessions.

* Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile);
  a hash made with older parameters is upgraded at the next sign-in.
* A sign-in is a random token: the browser holds it inside the signed session cookie, the
  database holds only its SHA-256, so signing out (or disabling an account) ends it at once.
* Failed sign-ins are counted per account name tried and per client address over a window;
  past either limit the attempt is refused before the password is even checked. An unknown
  account costs the same Argon2 work as a known one, so timing does not tell them apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from caseload.tables import SigninFailure, Staff, StaffSchool, StaffSession
from schemas.outcomes import ID_REGEX, StaffRole

USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # Argon2 takes any length; this only bounds the work a request can ask for
SCHOOL_ID = re.compile(ID_REGEX)

_hasher = PasswordHasher()
# Verified against when the account does not exist, so an unknown name costs the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """An account that cannot be created as asked (bad name, weak password, unknown role...)."""


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"the password must be at most {MAX_PASSWORD_CHARS} characters")


def create_staff(session: Session, username: str, password: str, role: StaffRole | str, schools: Iterable[str],
                 now: dt.datetime, *, replace: bool = False) -> Staff:
    """Add an account (or, with replace, reset an existing one's password, role and schools)."""
    if not USERNAME.fullmatch(username):
        raise AccountError("the user name must be 1 to 64 letters, digits or . _ @ -")
    try:
        role = StaffRole(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; one of: {', '.join(r.value for r in StaffRole)}") from None
    schools = sorted(set(schools))
    if not schools:
        raise AccountError("give at least one school (--school)")
    for school in schools:
        if not SCHOOL_ID.fullmatch(school):
            raise AccountError(f"school id {school!r} is not 1 to 64 letters, digits, '-' or '_'")
    check_password_strength(password)
    staff = session.scalars(select(Staff).where(func.lower(Staff.username) == username.lower())).first()
    if staff is not None and not replace:
        raise AccountError(f"user {username!r} exists (use --replace to reset it)")
    if staff is None:
        staff = Staff(username=username, password_hash="", role=role.value, active=True, created_at=now)
        session.add(staff)
        session.flush()
    staff.password_hash = _hasher.hash(password)
    staff.role = role.value
    staff.active = True
    session.execute(delete(StaffSchool).where(StaffSchool.staff_id == staff.id))
    session.execute(delete(StaffSession).where(StaffSession.staff_id == staff.id))  # a reset signs out
    session.add_all(StaffSchool(staff_id=staff.id, school_id=school) for school in schools)
    session.flush()
    return staff


def disable_staff(session: Session, username: str) -> bool:
    """Stop an account signing in, and end its live sign-ins at once; False if there is no such account."""
    staff = session.scalars(select(Staff).where(func.lower(Staff.username) == username.lower())).first()
    if staff is None:
        return False
    staff.active = False
    session.execute(delete(StaffSession).where(StaffSession.staff_id == staff.id))
    return True


def staff_schools(session: Session, staff_id: int) -> list[str]:
    return list(session.scalars(select(StaffSchool.school_id).where(StaffSchool.staff_id == staff_id)
                                .order_by(StaffSchool.school_id)))


class SigninResult(StrEnum):
    OK = "ok"
    WRONG = "wrong"  # unknown account or wrong password: the same answer for both
    HELD_BACK = "held_back"  # too many failures for this account or from this client


@dataclass(frozen=True)
class RateLimits:
    window: dt.timedelta
    per_account: int
    per_client: int


def _account_key(username: str) -> str:
    return username.strip().lower()[:64]


def held_back(session: Session, username: str, client: str, limits: RateLimits, now: dt.datetime) -> bool:
    since = now - limits.window
    account_failures = session.scalar(select(func.count()).select_from(SigninFailure).where(
        SigninFailure.account == _account_key(username), SigninFailure.at > since))
    if account_failures >= limits.per_account:
        return True
    client_failures = session.scalar(select(func.count()).select_from(SigninFailure).where(
        SigninFailure.client == client[:64], SigninFailure.at > since))
    return client_failures >= limits.per_client


def authenticate(session: Session, username: str, password: str, client: str, limits: RateLimits,
                 now: dt.datetime) -> tuple[SigninResult, Staff | None]:
    """Check a sign-in; failures are recorded for the rate limits (the caller commits)."""
    session.execute(delete(SigninFailure).where(SigninFailure.at <= now - limits.window))
    if held_back(session, username, client, limits, now):
        return SigninResult.HELD_BACK, None
    staff = None
    if USERNAME.fullmatch(username) and len(password) <= MAX_PASSWORD_CHARS:
        staff = session.scalars(select(Staff).where(func.lower(Staff.username) == username.lower(),
                                                    Staff.active.is_(True))).first()
    try:
        _hasher.verify(staff.password_hash if staff else _DUMMY_HASH, password[:MAX_PASSWORD_CHARS])
        verified = staff is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        verified = False
    if not verified:
        session.add(SigninFailure(account=_account_key(username), client=client[:64], at=now))
        return SigninResult.WRONG, None
    assert staff is not None
    if _hasher.check_needs_rehash(staff.password_hash):
        staff.password_hash = _hasher.hash(password)
    session.execute(delete(SigninFailure).where(SigninFailure.account == _account_key(username)))
    return SigninResult.OK, staff


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, staff: Staff, now: dt.datetime, max_age: dt.timedelta) -> str:
    """A new sign-in for this staff member; returns the token for the cookie (stored only hashed)."""
    session.execute(delete(StaffSession).where(StaffSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(StaffSession(token_hash=_token_hash(token), staff_id=staff.id, created_at=now,
                             expires_at=now + max_age))
    return token


def session_staff(session: Session, token: str | None, now: dt.datetime) -> Staff | None:
    """The active staff member signed in with this token, if it is live."""
    if not token or len(token) > 128:
        return None
    row = session.get(StaffSession, _token_hash(token))
    if row is None or row.expires_at <= now:
        return None
    staff = session.get(Staff, row.staff_id)
    return staff if staff is not None and staff.active else None


def end_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(StaffSession).where(StaffSession.token_hash == _token_hash(token)))
