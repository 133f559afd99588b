"""Event outbox: `trade_events.published_at` and the partial index of events not yet published.

Events are stored first and published to Redis after the commit; a crash in between leaves `published_at`
NULL, and a periodic job publishes those. Rows that exist before this revision count as published.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "trade_events"
INDEX = "ix_trade_events_unpublished"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.text(f"UPDATE {TABLE} SET published_at = created_at"))
    op.create_index(INDEX, TABLE, ["id"], postgresql_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_column(TABLE, "published_at")
