"""stages as resumable steps: the mail queue a stage's mail step sends from (so a mail server
that is down loses nothing), and the steps of a flow run that finished (so a retried run resumes
after them)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import cbflow.models

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queuedmail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("to", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("created_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("refused", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("queuedmail", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_queuedmail_batch"), ["batch"], unique=False)

    op.create_table(
        "stagestep",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("step", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("finished_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run", "step"),
    )
    with op.batch_alter_table("stagestep", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stagestep_run"), ["run"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stagestep", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stagestep_run"))

    op.drop_table("stagestep")
    with op.batch_alter_table("queuedmail", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_queuedmail_batch"))

    op.drop_table("queuedmail")
