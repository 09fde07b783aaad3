"""The worker's web endpoints.

Open, since they carry no pupil data: `/metrics` (Prometheus), `/livez`, `/readyz`.
Everything else needs `Authorization: Bearer <token>` with the token from the settings
(`RECONNECT_API_TOKEN` or `RECONNECT_API_TOKEN_FILE`); without a configured token those
endpoints are off (503), never open. State-changing endpoints take `application/json` only, so a
cross-site form or `text/plain` post is refused before anything is read. Faust's own table and
router pages are switched off in streams.app.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from models.state import PupilState
from schemas.outcomes import OutcomeEvent

if TYPE_CHECKING:
    import faust

    from streams.app import WorkerParts

log = logging.getLogger(__name__)
JSON = "application/json"


def _guard(view: View, token: str | None, *, changes_state: bool = False):
    """None when the request may proceed, else the response refusing it."""

    def check(request: Request) -> Response | None:
        if token is None:
            return view.json({"error": "this endpoint is off: no API token is configured "
                                       "(RECONNECT_API_TOKEN or RECONNECT_API_TOKEN_FILE)"}, status=503)
        offered = request.headers.get("Authorization", "")
        scheme, _, credential = offered.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), token.encode()):
            return view.json({"error": "a valid bearer token is required"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="reconnect"'})
        if changes_state and request.content_type != JSON:
            return view.json({"error": f"Content-Type must be {JSON}"}, status=415)
        return None

    return check


def protected(*, changes_state: bool = False):
    """Decorate a View method so it runs only for an authorised request."""

    def wrap(method: Callable[[View, Request], Awaitable[Response]]):
        async def guarded(self: View, request: Request) -> Response:
            refusal = _guard(self, self.token, changes_state=changes_state)(request)
            return refusal if refusal is not None else await method(self, request)

        guarded.__name__ = method.__name__
        return guarded

    return wrap


def register(app: faust.App, parts: WorkerParts) -> None:
    runtime, table = parts.runtime, parts.table
    token = parts.settings.api_token_value()
    if token is None:
        log.warning("API endpoints /model, /state and /outcomes are off: no API token is configured "
                    "(set RECONNECT_API_TOKEN or RECONNECT_API_TOKEN_FILE).")

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(runtime.metrics.registry),
                              content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/livez")
    class Live(View):
        """The process and its event loop are answering."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "alive"})

    @app.page("/readyz")
    class Ready(View):
        """Ready to process marks: a model is loaded and the consumer is not mid-rebalance."""

        async def get(self, request: Request) -> Response:
            problems = []
            if runtime.engine is None:
                problems.append(f"no model loaded: {runtime.model_error or 'loading'}")
            if app.rebalancing:
                problems.append("consumer group is rebalancing")
            if not app.consumer.assignment():
                problems.append("no partitions assigned yet")
            if problems:
                return self.json({"status": "not ready", "problems": problems}, status=503)
            return self.json({"status": "ready", "model_version": runtime.model.version if runtime.model else None})

    class Protected(View):
        """Every other endpoint: the token is checked by `protected` on each method."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.token = token

    @app.page("/model")
    class Model(Protected):
        @protected()
        async def get(self, request: Request) -> Response:
            body = {"loaded": runtime.model is not None, "refused_file": runtime.model_error}
            if runtime.model is None:
                return self.json(body, status=503)
            return self.json({**body, **runtime.model.describe()})

        @protected(changes_state=True)
        async def post(self, request: Request) -> Response:
            """Load the model file now (after replacing it), without a restart."""
            loaded = runtime.load()
            body = {"loaded": loaded, "version": runtime.model.version if runtime.model else None,
                    "error": runtime.model_error}
            return self.json(body, status=200 if loaded else 409)

    @app.page("/state")
    class StateSummary(Protected):
        """Totals over the pupil states this worker holds: for reconciliation, never per pupil."""

        @protected()
        async def get(self, request: Request) -> Response:
            pupils = sessions = folded = flagged = plans = 0
            for value in list(table.data.values()):
                state = PupilState.from_bytes(value)
                pupils += 1
                sessions += state.counted_marks()
                folded += state.folded_possible
                flagged += state.policy.flagged
                plans += state.policy.plan_open
            return self.json({"pupils": pupils, "sessions_held": sessions, "possible_sessions_folded": folded,
                              "pupils_flagged": flagged, "support_plans_open": plans})

    @app.page("/outcomes")
    class Outcomes(Protected):
        """Pastoral staff record what happened next (acknowledged, spoke with family, support plan...)."""

        @protected(changes_state=True)
        async def post(self, request: Request) -> Response:
            try:
                outcome = OutcomeEvent.from_request(await request.json())
            except ValidationError as error:
                problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_url=False)]
                return self.json({"accepted": False, "problems": problems}, status=422)
            except (ValueError, RecursionError):
                return self.json({"accepted": False, "problems": ["the body is not JSON"]}, status=400)
            await (await parts.outcomes.send(key=outcome.pupil_id.encode(), value=outcome.to_wire()))
            return self.json({"accepted": True, "outcome_id": outcome.outcome_id}, status=202)
