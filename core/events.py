"""Position events: the types, and the message every consumer of `trade_events` receives.

Producers (tracking workers) store an event in `trade_events`, then publish a :class:`TradeEventMessage` on the
Redis channel and append it to the bounded stream. Consumers (the API's WebSocket fan-out, later the copier)
parse it with :meth:`TradeEventMessage.model_validate_json`. The shape is the seed's WebSocket `data` object
(`id`, `trader_id`, `trader_address`, `timestamp`, `event_type`, `details`) plus `stream_id`, the id of the
message in the stream, so a client can resume after a disconnect without missing anything.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EventDetails", "EventType", "TradeEventMessage"]


class EventType(StrEnum):
    OPENED = "position_opened"
    CLOSED = "position_closed"
    INCREASED = "position_increased"
    DECREASED = "position_decreased"
    FLIPPED = "position_flipped"
    LIQUIDATED = "position_liquidated"


class EventDetails(BaseModel):
    """`details` of an event (stored as JSONB and sent to clients).

    Sizes are signed (positive long, negative short) as the exchange's `szi`; `previous_position` and
    `current_position` are the exchange's position objects (strings as on the wire), `{}` when flat.
    """

    model_config = ConfigDict(extra="allow")

    coin: str
    previous_size: float
    current_size: float
    size_change: float
    previous_position: dict[str, Any] = Field(default_factory=dict)
    current_position: dict[str, Any] = Field(default_factory=dict)
    entry_price: float | None = None
    side: str | None = Field(None, description="LONG, SHORT or FLAT: the side after the change")
    notional: float | None = Field(None, description="|current_size| x mark (or entry) price, USD")
    observed_at: datetime


class TradeEventMessage(BaseModel):
    """One position event as published on `trade_events` and served to WebSocket clients."""

    model_config = ConfigDict(extra="allow")

    id: int
    trader_id: int
    trader_address: str
    timestamp: datetime
    event_type: EventType
    details: EventDetails
    stream_id: str | None = None
