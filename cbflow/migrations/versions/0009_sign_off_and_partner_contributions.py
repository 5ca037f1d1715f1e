"""certified sign-off (the certifier an application is sent to) and partners' contributions to
the pooled budget, each confirmed by the partner through a single-use link

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import cbflow.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.add_column(sa.Column("certifier_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "sign_off_requested_at", cbflow.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("sign_off_requested_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.create_foreign_key(
            "fk_application_certifier_id_user", "user", ["certifier_id"], ["id"]
        )
    op.create_table(
        "partnercontribution",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("organisation", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("partner_type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("contact_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("contact_email", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("amounts", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("decline_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("token_expires_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("asked_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("responded_at", cbflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("responded_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", cbflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["application_id"], ["application.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("partnercontribution", schema=None) as batch_op:
        for column in ("application_id", "status", "token_hash"):
            batch_op.create_index(
                batch_op.f(f"ix_partnercontribution_{column}"), [column], unique=False
            )


def downgrade() -> None:
    with op.batch_alter_table("partnercontribution", schema=None) as batch_op:
        for column in ("token_hash", "status", "application_id"):
            batch_op.drop_index(batch_op.f(f"ix_partnercontribution_{column}"))
    op.drop_table("partnercontribution")
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.drop_constraint("fk_application_certifier_id_user", type_="foreignkey")
        batch_op.drop_column("sign_off_requested_by")
        batch_op.drop_column("sign_off_requested_at")
        batch_op.drop_column("certifier_id")
