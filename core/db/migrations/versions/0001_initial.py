"""Initial schema: traders, user_state_history, trade_events, leaderboard_metrics, tape_fills.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_trading_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_tracked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.CheckConstraint("address ~ '^0x[0-9a-f]{40}$'", name=op.f("ck_traders_address_lowercase_hex")),
        sa.CheckConstraint("slot >= 0 AND slot < 16384", name=op.f("ck_traders_slot_in_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traders")),
        sa.UniqueConstraint("address", name=op.f("uq_traders_address")),
    )
    op.create_index(
        "idx_traders_last_tracked_batching",
        "traders",
        [sa.literal_column("last_tracked_at ASC NULLS FIRST")],
        unique=False,
        postgresql_where=sa.text("is_active"),
    )
    op.create_index(
        "ix_traders_slot_last_tracked",
        "traders",
        ["slot", sa.literal_column("last_tracked_at ASC NULLS FIRST")],
        unique=False,
        postgresql_where=sa.text("is_active"),
    )
    op.create_table(
        "leaderboard_metrics",
        sa.Column("trader_id", sa.BigInteger(), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("account_age_days", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_volume_usd", sa.Numeric(precision=28, scale=8), server_default=sa.text("0"), nullable=False),
        sa.Column("win_rate", sa.Numeric(precision=20, scale=10), server_default=sa.text("0"), nullable=False),
        sa.Column("avg_risk_ratio", sa.Numeric(precision=20, scale=10), server_default=sa.text("0"), nullable=False),
        sa.Column("max_drawdown", sa.Numeric(precision=20, scale=10), server_default=sa.text("0"), nullable=False),
        sa.Column("max_profit_usd", sa.Numeric(precision=28, scale=8), server_default=sa.text("0"), nullable=False),
        sa.Column("max_loss_usd", sa.Numeric(precision=28, scale=8), server_default=sa.text("0"), nullable=False),
        sa.Column("realized_pnl_usd", sa.Numeric(precision=28, scale=8), server_default=sa.text("0"), nullable=False),
        sa.Column("roi", sa.Numeric(precision=20, scale=10), server_default=sa.text("0"), nullable=False),
        sa.Column("trade_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("low_sample", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("metrics_version", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("\"window\" IN ('7d', '30d', 'all')", name=op.f("ck_leaderboard_metrics_window_known")),
        sa.CheckConstraint(
            "max_drawdown >= 0 AND max_drawdown <= 1", name=op.f("ck_leaderboard_metrics_max_drawdown_ratio")
        ),
        sa.CheckConstraint("trade_count >= 0", name=op.f("ck_leaderboard_metrics_trade_count_nonnegative")),
        sa.CheckConstraint("win_rate >= 0 AND win_rate <= 1", name=op.f("ck_leaderboard_metrics_win_rate_ratio")),
        sa.ForeignKeyConstraint(
            ["trader_id"], ["traders.id"], name=op.f("fk_leaderboard_metrics_trader_id_traders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("trader_id", "window", name=op.f("pk_leaderboard_metrics")),
    )
    op.create_index(
        "ix_leaderboard_metrics_window_volume", "leaderboard_metrics", ["window", "total_volume_usd"], unique=False
    )
    op.create_index(
        "ix_leaderboard_metrics_window_win_rate", "leaderboard_metrics", ["window", "win_rate"], unique=False
    )
    op.create_table(
        "tape_fills",
        sa.Column("trader_id", sa.BigInteger(), nullable=False),
        sa.Column("coin", sa.String(length=40), nullable=False),
        sa.Column("side", sa.String(length=1), nullable=False),
        sa.Column("px", sa.Numeric(precision=28, scale=10), nullable=False),
        sa.Column("sz", sa.Numeric(precision=28, scale=10), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tid", sa.BigInteger(), nullable=False),
        sa.Column("crossed", sa.Boolean(), nullable=False),
        sa.CheckConstraint("side IN ('B', 'A')", name=op.f("ck_tape_fills_side_known")),
        sa.CheckConstraint("px > 0 AND sz > 0", name=op.f("ck_tape_fills_positive_px_sz")),
        # no foreign key: its per-row check trigger cost more than the rest of the insert (discovery writes
        # two rows per trade and takes trader_id from the traders row it just resolved)
        # one index serves both the per-trader time ranges and the deduplication of a trade's fill (side
        # included: both sides of a self-trade belong to one trader)
        sa.PrimaryKeyConstraint("trader_id", "time", "coin", "tid", "side", name=op.f("pk_tape_fills")),
    )
    op.create_table(
        "trade_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("trader_id", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("coin", sa.String(length=40), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "event_type IN ('position_opened', 'position_closed', 'position_increased', "
            "'position_decreased', 'position_flipped', 'position_liquidated')",
            name=op.f("ck_trade_events_event_type_known"),
        ),
        sa.ForeignKeyConstraint(
            ["trader_id"], ["traders.id"], name=op.f("fk_trade_events_trader_id_traders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trade_events")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_trade_events_idempotency_key")),
    )
    op.create_index(
        "ix_trade_events_coin_time", "trade_events", ["coin", sa.literal_column("timestamp DESC")], unique=False
    )
    op.create_index("ix_trade_events_timestamp", "trade_events", ["timestamp"], unique=False)
    op.create_index(
        "ix_trade_events_trader_time", "trade_events", ["trader_id", sa.literal_column("timestamp DESC")], unique=False
    )
    op.create_table(
        "user_state_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("trader_id", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("state_data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("account_value", sa.Numeric(precision=28, scale=8), nullable=True),
        sa.Column("total_notional", sa.Numeric(precision=28, scale=8), nullable=True),
        sa.Column("is_heartbeat", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["trader_id"], ["traders.id"], name=op.f("fk_user_state_history_trader_id_traders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_state_history")),
    )
    op.create_index("ix_user_state_history_timestamp", "user_state_history", ["timestamp"], unique=False)
    op.create_index(
        "ix_user_state_history_trader_time",
        "user_state_history",
        ["trader_id", sa.literal_column("timestamp DESC")],
        unique=False,
    )


def downgrade() -> None:
    for table in ("user_state_history", "trade_events", "tape_fills", "leaderboard_metrics", "traders"):
        op.drop_table(table)
