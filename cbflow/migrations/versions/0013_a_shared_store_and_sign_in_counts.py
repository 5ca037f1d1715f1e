"""workers and portals on several hosts: rendered documents and uploads kept in the database
(CBFLOW_STORE=database), and sign-in asks counted where every portal process sees them

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import cbflow.models

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signinasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("minute", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("asks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client", "minute"),
    )
    with op.batch_alter_table("signinasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signinasks_minute"), ["minute"], unique=False)

    op.create_table(
        "storedfile",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("storedfile", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_storedfile_key"), ["key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("storedfile", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_storedfile_key"))

    op.drop_table("storedfile")
    with op.batch_alter_table("signinasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signinasks_minute"))

    op.drop_table("signinasks")
