"""Running the caseload: migrate the database, start the consumer and the outbox, serve the app."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from caseload.consumer import CaseloadConsumer, RecordHandler
from caseload.db import make_engine, session_factory, upgrade
from caseload.publisher import OutboxThread, OutcomePublisher
from caseload.settings import CaseloadSettings, session_secret
from caseload.web import create_app

log = logging.getLogger(__name__)


def safe_url(url: str) -> str:
    """The database URL fit for a log line (no password)."""
    return make_url(url).render_as_string(hide_password=True)


@dataclass
class Components:
    sessions: sessionmaker[Session]
    handler: RecordHandler
    publisher: OutcomePublisher
    consumer: CaseloadConsumer | None = None
    outbox: OutboxThread | None = None

    def health(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer.state if self.consumer is not None else "off",
            "records": self.handler.snapshot(),
            "outcomes_published": self.publisher.published,
        }


def build_app(settings: CaseloadSettings):
    """The app with its background parts, after bringing the database to the latest migration."""
    engine = make_engine(settings.database_url)
    log.info("Database %s: migrating to the latest schema", safe_url(settings.database_url))
    upgrade(engine)
    sessions = session_factory(engine)
    handler = RecordHandler(settings, sessions)
    publisher = OutcomePublisher(settings, sessions)
    parts = Components(sessions, handler, publisher)
    if settings.consume:
        parts.consumer = CaseloadConsumer(settings, handler)
        parts.outbox = OutboxThread(publisher, settings.outbox_interval_s)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if parts.consumer is not None:
            parts.consumer.start()
            parts.outbox.start()
            log.info("Consuming %s and %s as group %s from %s", settings.topic_interventions, settings.topic_marks,
                     settings.consumer_group, settings.kafka_bootstrap_servers)
        try:
            yield
        finally:
            if parts.consumer is not None:
                parts.consumer.stop()
                parts.outbox.stop()
            publisher.sender.close()
            engine.dispose()

    app = create_app(settings, sessions, secret_key=session_secret(settings), publisher=publisher,
                     health=parts.health, lifespan=lifespan)
    return app, parts


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s")
    # kafka-python logs every failed connection attempt; the consumer reports its own state instead.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def serve(settings: CaseloadSettings) -> None:
    import uvicorn

    configure_logging(settings.log_level)
    app, _ = build_app(settings)
    if not settings.cookie_secure:
        log.warning("Session cookies are not marked Secure (RECONNECT_CASELOAD_COOKIE_SECURE=false): "
                    "for a local demo on http://127.0.0.1 only")
    log.info("Caseload on http://%s:%d", settings.bind, settings.port)
    proxied = settings.forwarded_allow_ips is not None
    config = uvicorn.Config(app, host=settings.bind, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=False, server_header=False, proxy_headers=proxied,
                            forwarded_allow_ips=settings.forwarded_allow_ips if proxied else None, lifespan="on")
    uvicorn.Server(config).run()
