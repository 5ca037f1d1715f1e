"""flow runs the portal started

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import cbflow.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "startedrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("flow", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("started_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("started_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["round_id"], ["round.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("startedrun", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_startedrun_flow_run_id"), ["flow_run_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_startedrun_round_id"), ["round_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("startedrun", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_startedrun_round_id"))
        batch_op.drop_index(batch_op.f("ix_startedrun_flow_run_id"))
    op.drop_table("startedrun")
