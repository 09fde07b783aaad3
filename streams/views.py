"""The worker's web endpoints: Prometheus metrics, liveness, readiness and the loaded model."""

from __future__ import annotations

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from models.state import PupilState
from schemas.outcomes import OutcomeEvent
from streams.agents import runtime
from streams.app import app
from streams.tables import pupil_state
from streams.topics import outcomes_topic


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(runtime.metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


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


@app.page("/model")
class Model(View):
    async def get(self, request: Request) -> Response:
        if runtime.model is None:
            return self.json({"loaded": False, "error": runtime.model_error}, status=503)
        return self.json({"loaded": True, **runtime.model.describe()})

    async def post(self, request: Request) -> Response:
        """Load the model file now (after replacing it), without a restart."""
        loaded = runtime.load()
        body = {"loaded": loaded, "version": runtime.model.version if runtime.model else None,
                "error": runtime.model_error}
        return self.json(body, status=200 if loaded else 409)


@app.page("/state")
class StateSummary(View):
    """Totals over the pupil states this worker holds: for reconciliation, never per pupil."""

    async def get(self, request: Request) -> Response:
        pupils = sessions = folded = flagged = plans = 0
        for value in list(pupil_state.data.values()):
            state = PupilState.from_bytes(value) if isinstance(value, bytes) else value
            pupils += 1
            sessions += state.counted_marks()
            folded += state.folded_possible
            flagged += state.policy.flagged
            plans += state.policy.plan_open
        return self.json({"pupils": pupils, "sessions_held": sessions, "possible_sessions_folded": folded,
                          "pupils_flagged": flagged, "support_plans_open": plans})


@app.page("/outcomes")
class Outcomes(View):
    """Pastoral staff record what happened next (acknowledged, spoke with family, support plan...)."""

    async def post(self, request: Request) -> Response:
        try:
            outcome = OutcomeEvent.from_request(await request.json())
        except ValidationError as error:
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_url=False)]
            return self.json({"accepted": False, "problems": problems}, status=422)
        except ValueError:
            return self.json({"accepted": False, "problems": ["the body is not JSON"]}, status=400)
        await (await outcomes_topic.send(key=outcome.pupil_id.encode(), value=outcome.to_wire()))
        return self.json({"accepted": True, "outcome_id": outcome.outcome_id}, status=202)
