"""assessors' conflicts of interest and their draft scores

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import cbflow.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conflict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assessor_id", sa.Integer(), nullable=False),
        sa.Column("council_code", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("declared_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assessor_id"], ["user.id"]),
        sa.ForeignKeyConstraint(["council_code"], ["council.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("assessor_id", "council_code"),
    )
    with op.batch_alter_table("conflict", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conflict_assessor_id"), ["assessor_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_conflict_council_code"), ["council_code"], unique=False
        )

    # existing assignments start with no draft
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("draft", sa.JSON(), server_default=sa.text("'{}'"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_column("draft")

    with op.batch_alter_table("conflict", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conflict_council_code"))
        batch_op.drop_index(batch_op.f("ix_conflict_assessor_id"))
    op.drop_table("conflict")
