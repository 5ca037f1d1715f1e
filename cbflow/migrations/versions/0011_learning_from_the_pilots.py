"""learning from the pilots while they run: councils following a place, the place's model in
versions at milestones, the rolling adoption route, support offers and their requests, and the
programme board's packs

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import cbflow.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "boardpack",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("created_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("boardpack", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_boardpack_key"), ["key"], unique=True)

    op.create_table(
        "follow",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("council_code", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("followed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("followed_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("intends_to_adopt_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("intends_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("digested_until", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["application.id"],
        ),
        sa.ForeignKeyConstraint(
            ["council_code"],
            ["council.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("application_id", "council_code"),
    )
    with op.batch_alter_table("follow", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_follow_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_follow_council_code"), ["council_code"], unique=False)

    op.create_table(
        "supportrequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("council_code", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("what_for", sa.Text(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("requested_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("decided_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["application.id"],
        ),
        sa.ForeignKeyConstraint(
            ["council_code"],
            ["council.code"],
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("supportrequest", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_supportrequest_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_supportrequest_council_code"), ["council_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_supportrequest_offer_id"), ["offer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_supportrequest_round_id"), ["round_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_supportrequest_state"), ["state"], unique=False)

    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("route", sa.String(length=20), server_default="competitive", nullable=False)
        )
        batch_op.add_column(
            sa.Column("share_returns", sa.Boolean(), server_default=sa.true(), nullable=False)
        )

    with op.batch_alter_table("publishedmodel", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changes", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("milestone_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )

    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("provider")

    with op.batch_alter_table("publishedmodel", schema=None) as batch_op:
        batch_op.drop_column("milestone_id")
        batch_op.drop_column("changes")

    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.drop_column("share_returns")
        batch_op.drop_column("route")

    with op.batch_alter_table("supportrequest", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_supportrequest_state"))
        batch_op.drop_index(batch_op.f("ix_supportrequest_round_id"))
        batch_op.drop_index(batch_op.f("ix_supportrequest_offer_id"))
        batch_op.drop_index(batch_op.f("ix_supportrequest_council_code"))
        batch_op.drop_index(batch_op.f("ix_supportrequest_application_id"))

    op.drop_table("supportrequest")
    with op.batch_alter_table("follow", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_follow_council_code"))
        batch_op.drop_index(batch_op.f("ix_follow_application_id"))

    op.drop_table("follow")
    with op.batch_alter_table("boardpack", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_boardpack_key"))

    op.drop_table("boardpack")
