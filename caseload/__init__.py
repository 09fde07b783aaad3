"""The pastoral caseload: where intervention events land, are looked at, and are acted on.

A small Starlette web app on its own database (SQLite or PostgreSQL, through SQLAlchemy and
Alembic). It talks to the rest of Reconnect only through Kafka topics and the contracts in
`schemas`: it consumes the interventions (cases) and the register marks (the session grid),
and publishes what staff record as outcome events, which the worker's support plans act on.
"""
