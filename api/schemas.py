"""Request enums and response models of the REST API (the OpenAPI schema is built from them).

The seed's shapes are kept field for field; every extra field is additive.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "CacheCleared",
    "EventOut",
    "Health",
    "LeaderboardRow",
    "Order",
    "Position",
    "SortField",
    "Stats",
    "TraderDetail",
    "TraderOut",
    "Welcome",
    "Window",
]


class SortField(StrEnum):
    """The seed's seven sort fields, then ours (additive)."""

    win_rate = "win_rate"
    total_volume_usd = "total_volume_usd"
    account_age_days = "account_age_days"
    max_profit_usd = "max_profit_usd"
    max_loss_usd = "max_loss_usd"
    avg_risk_ratio = "avg_risk_ratio"
    max_drawdown = "max_drawdown"
    realized_pnl_usd = "realized_pnl_usd"
    roi = "roi"
    trade_count = "trade_count"


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


class Window(StrEnum):
    d7 = "7d"
    d30 = "30d"
    all = "all"


class Welcome(BaseModel):
    message: str
    docs: str = "/docs"
    page: str = "/ui"


class Health(BaseModel):
    status: str = Field(description="`healthy` or `unhealthy` (then the status code is 503)")
    database: str
    redis: str
    feed: str = Field(description="`subscribed` while this process receives events from Redis")


class LeaderboardRow(BaseModel):
    trader_id: int
    trader_address: str
    win_rate: float
    total_volume_usd: float
    account_age_days: int
    avg_risk_ratio: float
    max_drawdown: float
    max_profit_usd: float
    max_loss_usd: float
    updated_at: datetime
    # additive
    rank: int | None = Field(None, description="1-based position in this ordering (offset included)")
    window: Window
    realized_pnl_usd: float
    roi: float
    trade_count: int
    win_count: int = Field(description="closed trades with a profit after estimated fees")
    fees_usd: float = Field(description="estimated exchange fees of the counted trades")
    last_trade_at: datetime | None = Field(description="close time of the latest counted trade")
    low_sample: bool = Field(description="too few trades to rank: listed after every real record")


class TraderOut(BaseModel):
    id: int
    address: str
    first_seen_at: datetime
    last_tracked_at: datetime | None
    is_active: bool
    # additive
    last_seen_trading_at: datetime | None
    slot: int


class EventOut(BaseModel):
    id: int
    timestamp: datetime
    event_type: str
    details: dict[str, Any]
    # additive
    trader_id: int
    coin: str


class Position(BaseModel):
    """One open position from the newest state snapshot (numbers parsed from the exchange's strings)."""

    coin: str
    side: str = Field(description="LONG or SHORT")
    size: float = Field(description="signed: positive long, negative short")
    entry_price: float | None
    position_value: float | None
    unrealized_pnl: float | None
    return_on_equity: float | None
    leverage: float | None
    leverage_type: str | None
    liquidation_price: float | None
    margin_used: float | None


class TraderDetail(BaseModel):
    trader: TraderOut
    snapshot_at: datetime | None = Field(description="time of the newest state snapshot (null: never tracked)")
    account_value: float | None
    total_notional: float | None
    positions: list[Position]
    metrics: list[LeaderboardRow] = Field(description="one row per window that has been computed")


class DatabaseStats(BaseModel):
    total_traders: int
    active_traders: int
    total_trade_events: int


class WebsocketStats(BaseModel):
    active_connections: int


class CacheStats(BaseModel):
    redis_connected: bool


class Stats(BaseModel):
    database: DatabaseStats
    websocket: WebsocketStats
    cache: CacheStats
    timestamp: str


class CacheCleared(BaseModel):
    message: str
    cleared: int
