"""Every SQL statement the API runs, built with SQLAlchemy Core: values are always bound parameters, and the
only caller-chosen identifiers (sort columns) come from a fixed mapping, never from a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hyperfollow.api.schemas import Order, SortField, Window
from hyperfollow.core.db.models import LeaderboardMetric, TradeEvent, Trader, UserStateHistory

__all__ = [
    "LeaderboardQuery",
    "TraderRef",
    "count_stats",
    "find_trader",
    "latest_snapshot",
    "leaderboard",
    "list_traders",
    "trader_events",
    "trader_metrics",
]

M, T, E, S = LeaderboardMetric, Trader, TradeEvent, UserStateHistory

SORT_COLUMNS = {field: getattr(M, field.value) for field in SortField}

_METRIC_COLUMNS = (M.trader_id, T.address.label("trader_address"), M.win_rate, M.total_volume_usd,
                   M.account_age_days, M.avg_risk_ratio, M.max_drawdown, M.max_profit_usd, M.max_loss_usd,
                   M.updated_at, M.window, M.realized_pnl_usd, M.roi, M.trade_count, M.win_count, M.fees_usd,
                   M.last_trade_at, M.low_sample)
_TRADER_COLUMNS = (T.id, T.address, T.first_seen_at, T.last_tracked_at, T.is_active, T.last_seen_trading_at, T.slot)


def _plain(row: Any) -> dict[str, Any]:
    """A result row as a dict of JSON-ready values (Decimal -> float)."""
    return {key: float(value) if isinstance(value, Decimal) else value for key, value in row._mapping.items()}


@dataclass(frozen=True)
class LeaderboardQuery:
    sort_by: SortField = SortField.win_rate
    order: Order = Order.desc
    window: Window = Window.all
    limit: int = 100
    offset: int = 0
    min_trades: int = 0
    min_volume: float = 0.0
    include_low_sample: bool = True

    def cache_suffix(self) -> str:
        """Everything but sort_by and order (those are in the key itself), in one canonical form."""
        return (f"w={self.window.value}:l={self.limit}:o={self.offset}:mt={self.min_trades}"
                f":mv={self.min_volume!r}:ls={int(self.include_low_sample)}")


def _leaderboard_select(q: LeaderboardQuery) -> Select[Any]:
    column = SORT_COLUMNS[q.sort_by]
    direction = column.asc() if q.order is Order.asc else column.desc()
    stmt = (select(*_METRIC_COLUMNS).join(T, T.id == M.trader_id).where(M.window == q.window.value)
            # low-sample rows never rank above real records, whatever the sort field
            .order_by(M.low_sample.asc(), direction.nulls_last(), M.trader_id.asc())
            .limit(q.limit).offset(q.offset))
    if q.min_trades:
        stmt = stmt.where(M.trade_count >= q.min_trades)
    if q.min_volume:
        stmt = stmt.where(M.total_volume_usd >= Decimal(repr(q.min_volume)))
    if not q.include_low_sample:
        stmt = stmt.where(M.low_sample.is_(False))
    return stmt


async def leaderboard(conn: AsyncConnection, q: LeaderboardQuery) -> list[dict[str, Any]]:
    rows = (await conn.execute(_leaderboard_select(q))).all()
    return [{**_plain(row), "rank": q.offset + i + 1} for i, row in enumerate(rows)]


@dataclass(frozen=True)
class TraderRef:
    """A trader named by numeric id or by (canonical) address."""

    id: int | None = None
    address: str | None = None


async def find_trader(conn: AsyncConnection, ref: TraderRef) -> dict[str, Any] | None:
    stmt = select(*_TRADER_COLUMNS)
    stmt = stmt.where(T.id == ref.id) if ref.id is not None else stmt.where(T.address == ref.address)
    row = (await conn.execute(stmt)).first()
    return _plain(row) if row else None


async def list_traders(conn: AsyncConnection, *, limit: int, offset: int, address_prefix: str | None = None,
                       active: bool | None = None) -> list[dict[str, Any]]:
    stmt = select(*_TRADER_COLUMNS).order_by(T.id).limit(limit).offset(offset)
    if address_prefix:
        stmt = stmt.where(T.address.startswith(address_prefix, autoescape=True))
    if active is not None:
        stmt = stmt.where(T.is_active.is_(active))
    return [_plain(row) for row in (await conn.execute(stmt)).all()]


async def trader_events(conn: AsyncConnection, trader_id: int, *, limit: int, offset: int,
                        event_type: str | None = None, coin: str | None = None) -> list[dict[str, Any]]:
    stmt = (select(E.id, E.timestamp, E.event_type, E.details, E.trader_id, E.coin).where(E.trader_id == trader_id)
            .order_by(E.timestamp.desc(), E.id.desc()).limit(limit).offset(offset))
    if event_type:
        stmt = stmt.where(E.event_type == event_type)
    if coin:
        stmt = stmt.where(E.coin == coin)
    return [_plain(row) for row in (await conn.execute(stmt)).all()]


async def latest_snapshot(conn: AsyncConnection, trader_id: int) -> dict[str, Any] | None:
    stmt = (select(S.timestamp, S.state_data, S.account_value, S.total_notional).where(S.trader_id == trader_id)
            .order_by(S.timestamp.desc()).limit(1))
    row = (await conn.execute(stmt)).first()
    return _plain(row) if row else None


async def trader_metrics(conn: AsyncConnection, trader_id: int) -> list[dict[str, Any]]:
    stmt = select(*_METRIC_COLUMNS).join(T, T.id == M.trader_id).where(M.trader_id == trader_id)
    order = {w.value: i for i, w in enumerate(Window)}
    rows = sorted((_plain(row) for row in (await conn.execute(stmt)).all()), key=lambda r: order.get(r["window"], 9))
    return [{**row, "rank": None} for row in rows]


async def count_stats(conn: AsyncConnection) -> dict[str, int]:
    traders = (await conn.execute(select(func.count(), func.count().filter(T.is_active)).select_from(T))).one()
    events = (await conn.execute(select(func.count()).select_from(E))).scalar_one()
    return {"total_traders": traders[0], "active_traders": traders[1], "total_trade_events": events}
