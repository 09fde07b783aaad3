"""Alembic environment: runs on the engine the caseload hands over (caseload.db.upgrade)."""

from __future__ import annotations

from alembic import context

from caseload.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from sqlalchemy import create_engine

        engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata,
            # SQLite alters a table by copying it: let Alembic do that where a migration needs it.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `reconnect caseload migrate`")
run_migrations_online()
