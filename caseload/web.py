"""The caseload web app (Starlette, server-rendered Jinja2 templates, no JavaScript).

Pages: sign-in, the caseload (open cases for the staff member's schools, filtered, in urgency
order, keyset-paginated), and the pupil page (every event's reasons and suggested actions, the
session grid, the attendance chart, what staff recorded, and the forms to record more). A case
or pupil outside the staff member's schools answers 404, exactly as one that does not exist.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from caseload import auth, store
from caseload.chart import EventMark, attendance_chart
from caseload.register import (
    CELL_TEXT,
    CellClass,
    academic_year,
    attendance_series,
    code_breakdown,
    session_grid,
)
from caseload.security import CSRF_FIELD, CsrfGuard, SecurityHeaders, SignInRequired, StaffContext, csrf_token
from caseload.settings import CaseloadSettings
from caseload.tables import Staff
from schemas.events import InterventionEvent, InterventionKind
from schemas.outcomes import NOTE_MAX_CHARS, NOTE_WARNING, OUTCOME_ACTION_TEXT, OutcomeAction, StaffRole

log = logging.getLogger(__name__)
SCHOOL_TIME = ZoneInfo("Europe/London")
PUPIL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
OUTCOME_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
COOKIE_NAME = "reconnect_caseload"
ROLE_TEXT = {role: role.value.replace("_", " ") for role in StaffRole}
# Path templates for the access log: a pupil id in a URL must not reach a log line.
ROUTE_LOG = logging.getLogger("caseload.access")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _style() -> tuple[str, str]:
    css = resources.files("caseload").joinpath("static/style.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return css, f"sha256-{digest}"


@dataclass
class AppContext:
    settings: CaseloadSettings
    sessions: sessionmaker[Session]
    clock: Callable[[], dt.datetime]
    publisher: Any = None  # caseload.publisher.OutcomePublisher, when outcomes are published
    health: Callable[[], dict[str, Any]] | None = None

    def today(self) -> dt.date:
        return self.clock().astimezone(SCHOOL_TIME).date()


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx


def _staff(request: Request) -> StaffContext:
    staff = request.state.staff
    assert staff is not None  # SignInRequired lets no one without a sign-in this far
    return staff


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    base = {"staff": request.state.staff, "csrf_field": CSRF_FIELD, "csrf_token": csrf_token(request.session),
            "css": request.app.state.css, "role_text": ROLE_TEXT, "status_text": store.STATUS_TEXT,
            "kind_text": {kind.value: text for kind, text in store.KIND_TEXT.items()}}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


# -- health ----------------------------------------------------------------------------------------

def healthz(request: Request) -> Response:
    """Liveness and readiness in one: the database answers; consumer counts (no pupil data)."""
    ctx = _ctx(request)
    body: dict[str, Any] = {"status": "ok"}
    try:
        with ctx.sessions() as session:
            session.execute(text("SELECT 1"))
        body["database"] = "ok"
    except Exception as error:  # any failure to reach the database is "not healthy"
        body.update(status="unavailable", database=type(error).__name__)
    if ctx.health is not None:
        body.update(ctx.health())
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


# -- sign-in -----------------------------------------------------------------------------------------

def signin_page(request: Request) -> Response:
    if request.state.staff is not None:
        return RedirectResponse("/", status_code=303)
    return _render(request, "signin.html", {"error": None, "username": ""})


def signin(request: Request) -> Response:
    ctx = _ctx(request)
    form = request.state.form
    username, password = form.get("username", "").strip(), form.get("password", "")
    client = request.client.host if request.client else "unknown"
    settings = ctx.settings
    limits = auth.RateLimits(dt.timedelta(seconds=settings.signin_window_s), settings.signin_max_failures_per_account,
                             settings.signin_max_failures_per_client)
    now = ctx.clock()
    token = None
    with ctx.sessions.begin() as session:
        result, staff = auth.authenticate(session, username, password, client, limits, now)
        if staff is not None:
            auth.end_session(session, request.session.get("sid"))  # any earlier sign-in in this browser
            token = auth.start_session(session, staff, now, dt.timedelta(seconds=settings.session_max_age_s))
    if result is auth.SigninResult.HELD_BACK:
        log.warning("Sign-in held back after too many failures (account or client over the limit)")
        minutes = max(settings.signin_window_s // 60, 1)
        return _render(request, "signin.html", {
            "error": f"Too many failed sign-ins. Wait up to {minutes} minutes and try again, or ask an administrator.",
            "username": username}, status_code=429)
    if token is None:
        return _render(request, "signin.html", {"error": "That user name and password do not match an account.",
                                                "username": username}, status_code=401)
    request.session.clear()  # a fresh session: nothing from before the sign-in carries over
    request.session["sid"] = token
    csrf_token(request.session)
    return RedirectResponse("/", status_code=303)


def signout(request: Request) -> Response:
    ctx = _ctx(request)
    with ctx.sessions.begin() as session:
        auth.end_session(session, request.session.get("sid"))
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


# -- the caseload page -------------------------------------------------------------------------------

def caseload(request: Request) -> Response:
    ctx = _ctx(request)
    staff = _staff(request)
    params = dict(request.query_params)
    try:
        filters = store.CaseFilters.parse(params, staff.schools)
        cursor = store.Cursor.decode(params.get("after"))
    except store.FilterError as error:
        return _render(request, "error.html", {"title": "That filter is not available",
                                               "message": f"The {error} filter has a value this page does not offer."},
                       status_code=400)
    with ctx.sessions() as session:
        page = store.caseload_page(session, staff.schools, filters, cursor, ctx.settings.page_size)
    base = filters.query_params()
    next_url = f"/?{urlencode({**base, 'after': page.next_cursor.encode()})}" if page.next_cursor else None
    first_url = f"/?{urlencode(base)}" if cursor is not None else None
    return _render(request, "caseload.html", {
        "page": page, "filters": filters, "today": ctx.today(), "next_url": next_url, "first_url": first_url,
        "kinds": list(InterventionKind), "statuses": list(store.CaseStatus), "open_value": store.OPEN,
        "all_value": store.ANY, "unknown_year": store.UNKNOWN_YEAR,
    })


def case_redirect(request: Request) -> Response:
    ctx = _ctx(request)
    staff = _staff(request)
    with ctx.sessions() as session:
        case = store.case_in_scope(session, request.path_params["case_id"], staff.schools)
    if case is None:
        raise HTTPException(404)
    return RedirectResponse(f"/pupils/{case.pupil_id}#case-{case.id}", status_code=303)


# -- the pupil page ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventView:
    event: InterventionEvent
    case_id: int
    received_at: dt.datetime


def _event_mark(event: InterventionEvent) -> EventMark:
    kind = store.KIND_TEXT.get(event.kind, event.kind.value.replace("_", " "))
    return EventMark(event.as_of, f"{kind}, tier {int(event.tier)}")


def _earlier_level(events: list[InterventionEvent]) -> float | None:
    """The pupil's own earlier level as the latest concern stated it (enough sessions to mean something)."""
    for event in events:  # newest first
        window = event.window
        if event.kind is InterventionKind.CONCERN and window.earlier_possible >= 20:
            return window.earlier_attended / window.earlier_possible
    return None


def pupil_context(session: Session, pupil_id: str, staff: StaffContext, year_param: str | None,
                  today: dt.date) -> dict[str, Any] | None:
    """Everything the pupil page shows, or None when the pupil is not in the staff member's schools."""
    cases = [case for case in store.pupil_cases_in_scope(session, pupil_id, staff.schools)
             if case.school_id in staff.schools]
    if not cases:
        return None
    case_ids = [case.id for case in cases]
    views = [EventView(InterventionEvent.model_validate_json(row.payload), row.case_id, row.received_at)
             for row in store.case_events(session, case_ids)]
    events = [view.event for view in views]
    actions = store.case_actions(session, case_ids)
    staff_names = dict(session.execute(select(Staff.id, Staff.username).where(
        Staff.id.in_({a.staff_id for a in actions if a.staff_id is not None}))).all())
    years = store.pupil_years(session, pupil_id)
    default_year = academic_year(events[0].as_of) if events else academic_year(today)
    year = int(year_param) if year_param and year_param.isdigit() and int(year_param) in years else default_year
    record = years.get(year)
    series = attendance_series(record) if record else []
    return {
        "pupil_id": pupil_id, "name": store.display_name(session, pupil_id), "cases": cases, "events": views,
        "events_by_case": {case_id: [v for v in views if v.case_id == case_id] for case_id in case_ids},
        "actions_by_case": {case_id: [a for a in actions if a.case_id == case_id] for case_id in case_ids},
        "staff_names": staff_names, "year": year, "years": sorted(years), "today": today,
        "grid": session_grid(record) if record else [], "breakdown": code_breakdown(record) if record else [],
        "series": series, "latest": series[-1] if series else None,
        "chart": attendance_chart(series, earlier_level=_earlier_level(events),
                                  events=[_event_mark(e) for e in events]),
        "earlier_level": _earlier_level(events),
        "cell_text": CELL_TEXT, "cell_classes": list(CellClass),
    }


def _pupil_page(request: Request, pupil_id: str, *, errors: dict[int, str] | None = None,
                status_code: int = 200) -> Response:
    ctx = _ctx(request)
    staff = _staff(request)
    if not PUPIL_ID.fullmatch(pupil_id):
        raise HTTPException(404)
    with ctx.sessions() as session:
        context = pupil_context(session, pupil_id, staff, request.query_params.get("year"), ctx.today())
    if context is None:
        raise HTTPException(404)
    flash = request.session.pop("flash", None)
    return _render(request, "pupil.html", {
        **context, "errors": errors or {}, "flash": flash, "actions": list(OutcomeAction),
        "action_text": OUTCOME_ACTION_TEXT, "roles": list(StaffRole), "note_warning": NOTE_WARNING,
        "note_max": NOTE_MAX_CHARS, "new_outcome_id": lambda: str(uuid.uuid4()),
    }, status_code=status_code)


def pupil_page(request: Request) -> Response:
    return _pupil_page(request, request.path_params["pupil_id"])


# -- recording what happened -------------------------------------------------------------------------

def _case_for_post(request: Request, session: Session):
    case = store.case_in_scope(session, request.path_params["case_id"], _staff(request).schools)
    if case is None:
        raise HTTPException(404)
    return case


def _choice(enum, value: str | None):
    try:
        return enum(value)
    except ValueError:
        return None


def record_outcome(request: Request) -> Response:
    ctx = _ctx(request)
    staff = _staff(request)
    form = request.state.form
    action = _choice(OutcomeAction, form.get("action"))
    role = _choice(StaffRole, form.get("role"))
    outcome_id = form.get("outcome_id", "")
    note = form.get("note", "").strip() or None
    with ctx.sessions() as session:
        case = _case_for_post(request, session)
        pupil_id, case_id = case.pupil_id, case.id
        error = None
        if action is None or role is None or not OUTCOME_ID.fullmatch(outcome_id):
            error = "Choose what happened and your role."
        else:
            try:
                row = store.record_outcome(session, case, action=action, role=role, note=note, outcome_id=outcome_id,
                                           staff_id=staff.staff_id, now=ctx.clock())
                session.commit()
            except ValidationError as problem:
                session.rollback()
                error = "; ".join(e["msg"].removeprefix("Value error, ") for e in problem.errors(include_url=False))
            except store.DuplicateSubmission:
                session.rollback()
                return RedirectResponse(f"/pupils/{pupil_id}#case-{case_id}", status_code=303)
            except (store.CaseClosedError, ValueError) as problem:
                session.rollback()
                error = str(problem)
    if error is not None:
        return _pupil_page(request, pupil_id, errors={case_id: error}, status_code=422)
    published = ctx.publisher.publish_pending([row.id]) if ctx.publisher is not None else 0
    request.session["flash"] = (f"Recorded: {OUTCOME_ACTION_TEXT[action]}."
                                + ("" if published else " It will reach the stream worker when the broker is back."))
    return RedirectResponse(f"/pupils/{pupil_id}#case-{case_id}", status_code=303)


def assign(request: Request) -> Response:
    ctx = _ctx(request)
    staff = _staff(request)
    form = request.state.form
    assigned = _choice(StaffRole, form.get("assigned_role"))
    with ctx.sessions() as session:
        case = _case_for_post(request, session)
        pupil_id, case_id = case.pupil_id, case.id
        if assigned is None:
            error = "Choose a role to assign the case to."
        else:
            try:
                store.assign_case(session, case, assigned_role=assigned, role=StaffRole(staff.role),
                                  staff_id=staff.staff_id, now=ctx.clock())
                session.commit()
                error = None
            except store.CaseClosedError as problem:
                session.rollback()
                error = str(problem)
    if error is not None:
        return _pupil_page(request, pupil_id, errors={case_id: error}, status_code=422)
    request.session["flash"] = f"Assigned to: {ROLE_TEXT[assigned]}."
    return RedirectResponse(f"/pupils/{pupil_id}#case-{case_id}", status_code=303)


# -- errors and the access log ----------------------------------------------------------------------

ERROR_TEXT = {
    404: ("Not found", "There is no such page, or it belongs to a school outside your account."),
    405: ("Not allowed", "That page cannot be used like that."),
}


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    title, message = ERROR_TEXT.get(error.status_code, ("Something went wrong", str(error.detail)))
    if getattr(request.state, "staff", None) is None:
        return Response(title, status_code=error.status_code, media_type="text/plain")
    return _render(request, "error.html", {"title": title, "message": message}, status_code=error.status_code)


class AccessLog:
    """One line per request with the route's path template (never the pupil id in the path)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/" if scope["path"] == "/" else "(unmatched)")
            ROUTE_LOG.info("%s %s %d %.1fms", scope["method"], path, status["code"],
                           (time.perf_counter() - started) * 1000)


# -- the app -----------------------------------------------------------------------------------------

def staff_lookup(sessions: sessionmaker[Session], clock: Callable[[], dt.datetime]):
    def lookup(token: str | None) -> StaffContext | None:
        with sessions() as session:
            staff = auth.session_staff(session, token, clock())
            if staff is None:
                return None
            return StaffContext(staff.id, staff.username, staff.role, tuple(auth.staff_schools(session, staff.id)))
    return lookup


def create_app(settings: CaseloadSettings, sessions: sessionmaker[Session], *, secret_key: str,
               clock: Callable[[], dt.datetime] = utc_now, publisher=None,
               health: Callable[[], dict[str, Any]] | None = None, lifespan=None) -> Starlette:
    css, style_hash = _style()
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/", caseload, methods=["GET"]),
        Route("/cases/{case_id:int}", case_redirect, methods=["GET"]),
        Route("/cases/{case_id:int}/outcomes", record_outcome, methods=["POST"]),
        Route("/cases/{case_id:int}/assign", assign, methods=["POST"]),
        Route("/pupils/{pupil_id:str}", pupil_page, methods=["GET"]),
    ]
    middleware = [
        Middleware(AccessLog),
        Middleware(SecurityHeaders, style_hash=style_hash),
        Middleware(SessionMiddleware, secret_key=secret_key, session_cookie=COOKIE_NAME,
                   max_age=settings.session_max_age_s, same_site="lax", https_only=settings.cookie_secure),
        Middleware(CsrfGuard),
        Middleware(SignInRequired, lookup=staff_lookup(sessions, clock)),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error},
                    lifespan=lifespan, max_body_size=64 * 1024)
    templates = Jinja2Templates(directory=str(resources.files("caseload").joinpath("templates")))
    templates.env.filters["school_time"] = lambda stamp: stamp.astimezone(SCHOOL_TIME).strftime("%Y-%m-%d %H:%M")
    app.state.templates = templates
    app.state.css = css
    app.state.ctx = AppContext(settings, sessions, clock, publisher, health)
    return app
