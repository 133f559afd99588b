"""Turning a run of trades into one flush's worth of rows. Pure: no I/O, tested without servers.

A flush needs, per address, the earliest and latest trade time (first_seen_at for new traders, the
activity marks, last_seen_trading_at) and, when fills are recorded, one row per trader and trade,
deduplicated by (coin, tid, time) so a trade re-sent after a reconnect is stored once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple, Protocol

from hyperfollow.core.addresses import ADDRESS_PATTERN, InvalidAddress, normalise_address

__all__ = ["Batch", "FillRow", "TradeLike", "build_batch"]


class TradeLike(Protocol):
    """What discovery needs of a trade (core/hl_models.Trade provides it)."""

    coin: str
    side: str  # the taker's side: "B" buy, "A" sell
    px: Decimal
    sz: Decimal
    time: int  # ms
    tid: int
    buyer: str
    seller: str


class FillRow(NamedTuple):
    """A tuple, not a dataclass: two are made per trade on the hot path."""

    address: str
    coin: str
    side: str  # this trader's side
    px: Decimal
    sz: Decimal
    time: int
    tid: int
    crossed: bool  # this trader was the taker


@dataclass
class Batch:
    #: address -> (earliest, latest) trade time in ms
    activity: dict[str, tuple[int, int]] = field(default_factory=dict)
    fills: list[FillRow] = field(default_factory=list)
    trades: int = 0
    invalid_addresses: int = 0
    duplicate_trades: int = 0


def build_batch(trades: Iterable[TradeLike], *, record_fills: bool) -> Batch:
    """Aggregate trades; a trade with an invalid address keeps its valid side and counts the bad one."""
    batch = Batch()
    activity = batch.activity
    seen: set[tuple[str, int, int]] = set()
    for trade in trades:
        identity = (trade.coin, trade.tid, trade.time)
        if identity in seen:
            batch.duplicate_trades += 1
            continue
        seen.add(identity)
        batch.trades += 1
        for address, side in ((trade.buyer, "B"), (trade.seller, "A")):
            if ADDRESS_PATTERN.match(address):  # already canonical: the WebSocket client normalises
                normalised = address
            else:
                try:
                    normalised = normalise_address(address)
                except InvalidAddress:
                    batch.invalid_addresses += 1
                    continue
            time = trade.time
            known = activity.get(normalised)
            if known is None:
                activity[normalised] = (time, time)
            elif time < known[0] or time > known[1]:
                activity[normalised] = (min(known[0], time), max(known[1], time))
            if record_fills:
                batch.fills.append(FillRow(normalised, trade.coin, side, trade.px, trade.sz, time, trade.tid,
                                           side == trade.side))
    return batch
