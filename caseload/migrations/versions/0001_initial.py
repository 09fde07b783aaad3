"""Initial schema: staff and sign-ins, cases with their events and actions, pupil years, names.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Written to stand alone: a migration never imports the current models, which move on.
Timestamps are naive UTC columns (caseload.tables.UtcDateTime converts at the edge).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(length=64)
ROLE = sa.String(length=40)


def upgrade() -> None:
    op.create_table(
        "staff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", ID, nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
        sa.UniqueConstraint("username", name=op.f("uq_staff_username")),
    )
    op.create_table(
        "staff_school",
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("school_id", ID, nullable=False),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_staff_school_staff_id_staff"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("staff_id", "school_id", name=op.f("pk_staff_school")),
    )
    op.create_table(
        "staff_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_staff_session_staff_id_staff"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_staff_session")),
    )
    op.create_index(op.f("ix_staff_session_expires_at"), "staff_session", ["expires_at"])
    op.create_index(op.f("ix_staff_session_staff_id"), "staff_session", ["staff_id"])

    op.create_table(
        "signin_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", ID, nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_failure")),
    )
    op.create_index("ix_signin_failure_account_at", "signin_failure", ["account", "at"])
    op.create_index("ix_signin_failure_client_at", "signin_failure", ["client", "at"])

    op.create_table(
        "pupil_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pupil_id", ID, nullable=False),
        sa.Column("school_id", ID, nullable=False),
        sa.Column("track", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("waiting_since", sa.Date(), nullable=False),
        sa.Column("urgency_key", sa.BigInteger(), nullable=False),
        sa.Column("last_event_on", sa.Date(), nullable=False),
        sa.Column("assigned_role", ROLE, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pupil_case")),
    )
    op.create_index(op.f("ix_pupil_case_pupil_id"), "pupil_case", ["pupil_id"])
    op.create_index("ix_pupil_case_pupil_track_open", "pupil_case", ["pupil_id", "track", "is_open"])
    op.create_index("ix_pupil_case_urgency", "pupil_case", ["is_open", "urgency_key"])
    op.create_index("ix_pupil_case_school_urgency", "pupil_case", ["school_id", "is_open", "urgency_key"])

    op.create_table(
        "case_event",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("pupil_id", ID, nullable=False),
        sa.Column("school_id", ID, nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("escalation", sa.Boolean(), nullable=False),
        sa.Column("risk_score", sa.Float(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["pupil_case.id"], name=op.f("fk_case_event_case_id_pupil_case"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_case_event")),
    )
    op.create_index(op.f("ix_case_event_case_id"), "case_event", ["case_id"])
    op.create_index(op.f("ix_case_event_pupil_id"), "case_event", ["pupil_id"])

    op.create_table(
        "case_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("assigned_role", ROLE, nullable=True),
        sa.Column("note", sa.String(length=280), nullable=True),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("outcome_id", ID, nullable=True),
        sa.Column("outcome_payload", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["pupil_case.id"], name=op.f("fk_case_action_case_id_pupil_case"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_case_action_staff_id_staff"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_action")),
        sa.UniqueConstraint("outcome_id", name=op.f("uq_case_action_outcome_id")),
    )
    op.create_index(op.f("ix_case_action_case_id"), "case_action", ["case_id"])
    op.create_index("ix_case_action_unpublished", "case_action", ["published_at", "id"])

    op.create_table(
        "pupil_year",
        sa.Column("pupil_id", ID, nullable=False),
        sa.Column("academic_year", sa.Integer(), nullable=False),
        sa.Column("school_id", ID, nullable=False),
        sa.Column("last_date", sa.Date(), nullable=False),
        sa.Column("codes", sa.LargeBinary(), nullable=False),
        sa.Column("stamps", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pupil_id", "academic_year", name=op.f("pk_pupil_year")),
    )

    op.create_table(
        "pupil_name",
        sa.Column("pupil_id", ID, nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("year_group", sa.String(length=8), nullable=True),
        sa.Column("tutor_group", sa.String(length=32), nullable=True),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pupil_id", name=op.f("pk_pupil_name")),
    )
    op.create_index(op.f("ix_pupil_name_year_group"), "pupil_name", ["year_group"])


def downgrade() -> None:
    for table in ("pupil_name", "pupil_year", "case_action", "case_event", "pupil_case", "signin_failure",
                  "staff_session", "staff_school", "staff"):
        op.drop_table(table)
