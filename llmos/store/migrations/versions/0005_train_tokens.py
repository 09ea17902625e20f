"""Training steps record the input tokens they trained on (tokens per second on the console) and
when they were written (a follower of the curve reads what changed since).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("train_metrics", sa.Column("tokens", sa.Integer(), nullable=True))
    op.add_column("train_metrics", sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("train_metrics") as batch:
        batch.drop_column("recorded_at")
        batch.drop_column("tokens")
