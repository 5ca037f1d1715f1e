"""partnerships of councils: the councils of each application, one application per council per
round, and a partnership's name for its place

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import cbflow.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("place_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    op.create_table(
        "applicationmember",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("council_code", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("lead", sa.Boolean(), nullable=False),
        sa.Column("added_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("added_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("confirmed_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("confirmed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["application_id"], ["application.id"]),
        sa.ForeignKeyConstraint(["council_code"], ["council.code"]),
        sa.ForeignKeyConstraint(["round_id"], ["round.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("round_id", "council_code"),
    )
    with op.batch_alter_table("applicationmember", schema=None) as batch_op:
        for column in ("round_id", "application_id", "council_code"):
            batch_op.create_index(
                batch_op.f(f"ix_applicationmember_{column}"), [column], unique=False
            )
    # every application made before this was one council's: it leads, confirmed as it started.
    # An adoption of a published model is a route of its own and has no membership.
    op.execute(
        """
        INSERT INTO applicationmember
            (round_id, application_id, council_code, lead, added_at, added_by,
             confirmed_at, confirmed_by)
        SELECT a.round_id, a.id, a.council_code, TRUE, a.created_at, 'system',
               a.created_at, 'system'
        FROM application a
        WHERE a.adopted_from_model_id IS NULL
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("applicationmember", schema=None) as batch_op:
        for column in ("council_code", "application_id", "round_id"):
            batch_op.drop_index(batch_op.f(f"ix_applicationmember_{column}"))
    op.drop_table("applicationmember")
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.drop_column("place_name")
