"""drafts' versions and each answer's last change: applications' EOI and bid, and returns'
drafts (saved to come back to)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _version(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def _empty(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.JSON(), server_default=sa.text("'{}'"), nullable=False)


def upgrade() -> None:
    # existing drafts are at version 0, with no change noted
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.add_column(_version("eoi_version"))
        batch_op.add_column(_version("bid_version"))
        batch_op.add_column(_empty("eoi_changes"))
        batch_op.add_column(_empty("bid_changes"))

    # existing returns have no draft
    with op.batch_alter_table("returnrecord", schema=None) as batch_op:
        batch_op.add_column(_empty("draft"))
        batch_op.add_column(_version("draft_version"))
        batch_op.add_column(_empty("draft_changes"))


def downgrade() -> None:
    with op.batch_alter_table("returnrecord", schema=None) as batch_op:
        batch_op.drop_column("draft_changes")
        batch_op.drop_column("draft_version")
        batch_op.drop_column("draft")

    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.drop_column("bid_changes")
        batch_op.drop_column("eoi_changes")
        batch_op.drop_column("bid_version")
        batch_op.drop_column("eoi_version")
