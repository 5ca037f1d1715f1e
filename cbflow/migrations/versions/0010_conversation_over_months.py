"""a round as a conversation over months: prospectus versions (amendments), submissions kept
by version (reopening), extensions, clarification requests, reminders, and the portal's
availability by the minute

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import cbflow.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "availabilityminute",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("minute", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("process", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("slow", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("minute", "process"),
    )
    with op.batch_alter_table("availabilityminute", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_availabilityminute_minute"), ["minute"], unique=False)

    op.create_table(
        "prospectusversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("published_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("round_id", "version"),
    )
    with op.batch_alter_table("prospectusversion", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prospectusversion_round_id"), ["round_id"], unique=False
        )

    op.create_table(
        "clarification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("question_ids", sa.JSON(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer_by", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("asked_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("asked_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("original", sa.JSON(), nullable=False),
        sa.Column("draft", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("changed", sa.JSON(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("answered_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("reminded_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lapsed_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["application.id"],
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("clarification", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clarification_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_clarification_round_id"), ["round_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_clarification_state"), ["state"], unique=False)

    op.create_table(
        "extension",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("closes_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("granted_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("granted_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["application.id"],
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("extension", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_extension_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_extension_round_id"), ["round_id"], unique=False)

    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.Column("sent_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["application.id"],
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reminder_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_reminder_key"), ["key"], unique=True)
        batch_op.create_index(batch_op.f("ix_reminder_round_id"), ["round_id"], unique=False)

    op.create_table(
        "submission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("submitted_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("prospectus_version", sa.Integer(), nullable=False),
        sa.Column("reopened_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reopened_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["application.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("application_id", "stage", "version"),
    )
    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_submission_application_id"), ["application_id"], unique=False
        )

    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("prospectus_version", sa.Integer(), server_default="1", nullable=False)
        )

    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("prospectus_version", sa.Integer(), server_default="1", nullable=False)
        )

    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("prospectus_version", sa.Integer(), server_default="1", nullable=False)
        )

    # every round launched so far is at version 1 of its prospectus, as launched
    op.execute(
        "INSERT INTO prospectusversion "
        "(round_id, version, source, sha256, changes, reason, published_at, published_by) "
        "SELECT id, 1, prospectus_source, source_sha256, '[]', 'launched', launched_at, "
        "launched_by FROM round"
    )


def downgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("prospectus_version")

    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_column("prospectus_version")

    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.drop_column("prospectus_version")

    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_submission_application_id"))

    op.drop_table("submission")
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_round_id"))
        batch_op.drop_index(batch_op.f("ix_reminder_key"))
        batch_op.drop_index(batch_op.f("ix_reminder_application_id"))

    op.drop_table("reminder")
    with op.batch_alter_table("extension", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_extension_round_id"))
        batch_op.drop_index(batch_op.f("ix_extension_application_id"))

    op.drop_table("extension")
    with op.batch_alter_table("clarification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clarification_state"))
        batch_op.drop_index(batch_op.f("ix_clarification_round_id"))
        batch_op.drop_index(batch_op.f("ix_clarification_application_id"))

    op.drop_table("clarification")
    with op.batch_alter_table("prospectusversion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prospectusversion_round_id"))

    op.drop_table("prospectusversion")
    with op.batch_alter_table("availabilityminute", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_availabilityminute_minute"))

    op.drop_table("availabilityminute")
