"""Leaderboard trade statistics: win count, estimated fees, last closed trade; sign rules on profit/loss.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "leaderboard_metrics"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("win_count", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column(TABLE, sa.Column("fees_usd", sa.Numeric(precision=28, scale=8), server_default=sa.text("0"),
                                   nullable=False))
    op.add_column(TABLE, sa.Column("last_trade_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f("ck_leaderboard_metrics_win_count_within_trades"), TABLE,
                               "win_count >= 0 AND win_count <= trade_count")
    op.create_check_constraint(op.f("ck_leaderboard_metrics_profit_loss_nonnegative"), TABLE,
                               "max_profit_usd >= 0 AND max_loss_usd >= 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_leaderboard_metrics_profit_loss_nonnegative"), TABLE, type_="check")
    op.drop_constraint(op.f("ck_leaderboard_metrics_win_count_within_trades"), TABLE, type_="check")
    for column in ("last_trade_at", "fees_usd", "win_count"):
        op.drop_column(TABLE, column)
