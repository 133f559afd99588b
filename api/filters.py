"""WebSocket subscription filters (pure): which events a client wants, parsed from its query string.

Filters combine with AND; each takes a comma-separated list whose items combine with OR:
`?trader=0xabc…,0xdef…&coin=BTC,ETH&event_type=position_opened,position_closed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hyperfollow.core.addresses import InvalidAddress, normalise_address
from hyperfollow.core.events import EventType
from hyperfollow.core.settings import COIN_PATTERN

__all__ = ["MAX_FILTER_ITEMS", "EventFilter", "EventMeta", "FilterError", "event_meta", "parse_filter"]

MAX_FILTER_ITEMS = 100
_EVENT_TYPES = {e.value for e in EventType}


class FilterError(ValueError):
    """A filter parameter is invalid; the message says which and why."""


@dataclass(frozen=True, slots=True)
class EventMeta:
    """What filters look at, extracted once per message (not once per client)."""

    trader_address: str
    coin: str
    event_type: str


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Empty sets match everything."""

    traders: frozenset[str] = frozenset()
    coins: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()

    def matches(self, meta: EventMeta) -> bool:
        return ((not self.traders or meta.trader_address in self.traders)
                and (not self.coins or meta.coin in self.coins)
                and (not self.event_types or meta.event_type in self.event_types))

    @property
    def is_empty(self) -> bool:
        return not (self.traders or self.coins or self.event_types)

    def describe(self) -> dict[str, list[str]]:
        return {"trader": sorted(self.traders), "coin": sorted(self.coins), "event_type": sorted(self.event_types)}


def _items(name: str, value: str | None) -> list[str]:
    if value is None:
        return []
    items = [item.strip() for item in value.split(",") if item.strip()]
    if len(items) > MAX_FILTER_ITEMS:
        raise FilterError(f"{name}: at most {MAX_FILTER_ITEMS} values (got {len(items)})")
    return items


def parse_filter(trader: str | None = None, coin: str | None = None, event_type: str | None = None) -> EventFilter:
    """Build a filter from the raw query values; raise :class:`FilterError` on the first bad value."""
    traders = set()
    for item in _items("trader", trader):
        try:
            traders.add(normalise_address(item))
        except InvalidAddress as exc:
            raise FilterError(f"trader: {exc}") from None
    coins = set()
    for item in _items("coin", coin):
        if not COIN_PATTERN.match(item):
            raise FilterError(f"coin: not a perp coin name: {item[:40]!r} (expected e.g. BTC, kPEPE, xyz:TSLA)")
        coins.add(item)
    types = set()
    for item in _items("event_type", event_type):
        if item not in _EVENT_TYPES:
            raise FilterError(f"event_type: unknown {item[:40]!r}; one of {', '.join(sorted(_EVENT_TYPES))}")
        types.add(item)
    return EventFilter(frozenset(traders), frozenset(coins), frozenset(types))


def event_meta(message: dict[str, Any]) -> EventMeta:
    """Filter attributes of a parsed `TradeEventMessage` (the address compared in its canonical form)."""
    details = message.get("details") or {}
    return EventMeta(trader_address=str(message.get("trader_address", "")).lower(),
                     coin=str(details.get("coin", "")), event_type=str(message.get("event_type", "")))
