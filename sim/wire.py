"""The exchange's JSON, exactly: pure functions from market state to the shapes Hyperliquid sends.

Numbers are strings in the exchange's style (`"97013.0"`, `"0.30618"`, `"-17.115462"`): at most the
allowed decimals, trailing zeros dropped, at least one decimal. Prices keep at most 6 − szDecimals
decimals (entry prices, being averages, two more), sizes exactly szDecimals, USD amounts 6. Field order
follows the exchange's own messages.

The truth record (see `truth_record`) is ours, not the exchange's: one per position change::

    {"seq": 17, "trader": "0x…", "coin": "BTC", "time": 1700000000123, "tid": 123456789, "hash": "0x…",
     "px": "97013.0", "before": {"szi": "0.0", "entryPx": null}, "after": {"szi": "0.5", "entryPx": "97013.0"},
     "liquidated": false, "change": "position_opened"}

`before`/`after` are what `clearinghouseState` shows for that coin (`szi` "0.0" and `entryPx` null when
flat); `change` is the event type a tracker should derive (`position_opened`, `position_increased`,
`position_decreased`, `position_closed`, `position_flipped`, `position_liquidated`).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from hyperfollow.sim.market import (
    R_AFTER,
    R_AFTER_ENTRY,
    R_BEFORE,
    R_BEFORE_ENTRY,
    R_CLOSED,
    R_COIN,
    R_CROSSED,
    R_FEE,
    R_HASH,
    R_LIQUIDATED,
    R_LIQUIDATION,
    R_OID,
    R_PX,
    R_SEQ,
    R_TID,
    R_TIME,
    R_TRADER,
    T_BUYER,
    T_HASH,
    T_LOTS,
    T_PX,
    T_SELLER,
    T_TAKER_BUYS,
    T_TID,
    T_TIME,
    Coin,
    Market,
    Trade,
    Trader,
)

__all__ = [
    "GREETING",
    "PONG",
    "all_mids",
    "change_kind",
    "clearinghouse_state",
    "error_message",
    "fmt_entry",
    "fmt_num",
    "fmt_px",
    "fmt_sz",
    "meta",
    "portfolio",
    "subscription_response",
    "trade_dict",
    "trades_message",
    "truth_record",
    "user_fill",
    "user_fills",
    "user_fills_by_time",
]

GREETING = "Websocket connection established."
PONG = '{"channel":"pong"}'
USD_DECIMALS = 6
DAY_MS = 86_400_000
_WINDOWS = (("day", DAY_MS), ("week", 7 * DAY_MS), ("month", 30 * DAY_MS), ("allTime", None))


def fmt_num(value: float, decimals: int) -> str:
    """`value` with at most `decimals` decimals, the exchange's way: "12.5", "3.0", "0.0", "-0.000212"."""
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text += "0"
    else:
        text += ".0"
    if text == "-0.0":
        return "0.0"
    return text


def fmt_px(coin: Coin, px: float) -> str:
    return fmt_num(px, 6 - coin.sz_decimals)


def fmt_sz(coin: Coin, lots: int) -> str:
    """An exact size from integer lots (no float rounding)."""
    sign = "-" if lots < 0 else ""
    digits = str(-lots if lots < 0 else lots)
    d = coin.sz_decimals
    if d == 0:
        return f"{sign}{digits}.0"
    digits = digits.rjust(d + 1, "0")
    whole, frac = digits[:-d], digits[-d:].rstrip("0") or "0"
    if whole == "0" and frac == "0":
        return "0.0"
    return f"{sign}{whole}.{frac}"


def fmt_usd(value: float) -> str:
    return fmt_num(value, USD_DECIMALS)


def fmt_entry(coin: Coin, entry: float) -> str:
    """An entry price: a size-weighted average, so two more decimals than a price (keeps PnL checkable)."""
    return fmt_num(entry, 8 - coin.sz_decimals)


def _entry(coin: Coin, lots: int, entry: float) -> str | None:
    return fmt_entry(coin, entry) if lots else None


# --- WebSocket ------------------------------------------------------------------------------------------------
def subscription_response(subscription: dict[str, Any], method: str = "subscribe") -> str:
    return orjson.dumps({"channel": "subscriptionResponse",
                         "data": {"method": method, "subscription": subscription}}).decode()


def error_message(text: str) -> str:
    return orjson.dumps({"channel": "error", "data": text}).decode()


def trade_dict(market: Market, trade: Trade, time_ms: int | None = None) -> dict[str, Any]:
    """A WsTrade; `time_ms` replaces the trade's own time (pre-generated trades get their emission time)."""
    coin = market.coins[trade[0]]
    traders = market.traders
    return {"coin": coin.name, "side": "B" if trade[T_TAKER_BUYS] else "A", "px": fmt_px(coin, trade[T_PX]),
            "sz": fmt_sz(coin, trade[T_LOTS]), "time": trade[T_TIME] if time_ms is None else time_ms,
            "hash": trade[T_HASH], "tid": trade[T_TID],
            "users": [traders[trade[T_BUYER]].address, traders[trade[T_SELLER]].address]}


def trades_message(market: Market, trades: list[Trade], time_ms: int | None = None) -> str:
    """One `trades` message for trades of one coin: `{"channel":"trades","data":[WsTrade, ...]}`."""
    return orjson.dumps({"channel": "trades", "data": [trade_dict(market, t, time_ms) for t in trades]}).decode()


# --- /info ------------------------------------------------------------------------------------------------------
def meta(market: Market) -> dict[str, Any]:
    universe = []
    tables: dict[int, int] = {}
    for coin in market.coins:
        table = tables.setdefault(coin.max_leverage, len(tables) + 1)
        entry: dict[str, Any] = {"szDecimals": coin.sz_decimals, "name": coin.name,
                                 "maxLeverage": coin.max_leverage, "marginTableId": table}
        if not coin.listed:
            entry["isDelisted"] = True
        universe.append(entry)
    margin_tables = [[table, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": lev}]}]
                     for lev, table in tables.items()]
    return {"universe": universe, "marginTables": margin_tables}


def all_mids(market: Market) -> dict[str, str]:
    return {coin.name: fmt_px(coin, coin.mark) for coin in market.coins if coin.listed}


def _summary(value: float, ntl: float, raw: float, margin: float) -> dict[str, str]:
    return {"accountValue": fmt_usd(value), "totalNtlPos": fmt_usd(ntl), "totalRawUsd": fmt_usd(raw),
            "totalMarginUsed": fmt_usd(margin)}


def clearinghouse_state(market: Market, trader: Trader | None, now_ms: int) -> dict[str, Any]:
    """The user's perp account; an unknown user gets an empty account (not an error), like the exchange."""
    if trader is None:
        empty = _summary(0.0, 0.0, 0.0, 0.0)
        return {"marginSummary": empty, "crossMarginSummary": dict(empty), "crossMaintenanceMarginUsed": "0.0",
                "withdrawable": "0.0", "assetPositions": [], "time": now_ms}
    positions = []
    total_ntl = signed_ntl = margin_used = maintenance = unrealized_sum = 0.0
    for ci in sorted(trader.positions):
        pos = trader.positions[ci]
        coin = market.coins[ci]
        size = pos.lots * coin.lot
        value = abs(size) * coin.mark
        unrealized = size * (coin.mark - pos.entry)
        margin = value / pos.leverage
        total_ntl += value
        signed_ntl += size * coin.mark
        margin_used += margin
        maintenance += value * coin.mmr
        unrealized_sum += unrealized
        invested = abs(size) * pos.entry / pos.leverage
        leverage: dict[str, Any] = {"type": "isolated" if trader.isolated else "cross", "value": pos.leverage}
        if trader.isolated:
            leverage["rawUsd"] = fmt_usd(abs(size) * pos.entry / pos.leverage - size * pos.entry)
        liq = pos.liq_px if pos.liq_px > 0 and math.isfinite(pos.liq_px) else None
        positions.append({"type": "oneWay", "position": {
            "coin": coin.name, "szi": fmt_sz(coin, pos.lots), "leverage": leverage,
            "entryPx": fmt_entry(coin, pos.entry), "positionValue": fmt_usd(value),
            "unrealizedPnl": fmt_usd(unrealized),
            "returnOnEquity": fmt_num(unrealized / invested if invested else 0.0, 9),
            "liquidationPx": fmt_px(coin, liq) if liq is not None else None, "marginUsed": fmt_usd(margin),
            "maxLeverage": coin.max_leverage,
            "cumFunding": {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"}}})
    account_value = trader.equity() + unrealized_sum
    summary = _summary(account_value, total_ntl, account_value - signed_ntl, margin_used)
    return {"marginSummary": summary, "crossMarginSummary": dict(summary),
            "crossMaintenanceMarginUsed": fmt_usd(maintenance),
            "withdrawable": fmt_usd(max(0.0, account_value - margin_used)),
            "assetPositions": positions, "time": now_ms}


def change_kind(before: int, after: int, liquidated: bool) -> str:
    """The event a position change is: opened, increased, decreased, closed, flipped, liquidated."""
    if liquidated:
        return "position_liquidated"
    if before == 0:
        return "position_opened"
    if after == 0:
        return "position_closed"
    if (before > 0) != (after > 0):
        return "position_flipped"
    return "position_increased" if abs(after) > abs(before) else "position_decreased"


def _dir(record: list, isolated: bool) -> str:
    before, after = record[R_BEFORE], record[R_AFTER]
    if record[R_LIQUIDATED]:
        return f"Liquidated {'Isolated' if isolated else 'Cross'} {'Long' if before > 0 else 'Short'}"
    if before == 0 or ((before > 0) == (after > 0) and abs(after) > abs(before)):
        return "Open Long" if after > 0 else "Open Short"
    if after != 0 and (before > 0) != (after > 0):
        return "Long > Short" if before > 0 else "Short > Long"
    return "Close Long" if before > 0 else "Close Short"


def user_fill(market: Market, record: list) -> dict[str, Any]:
    """One of a user's fills, from the record of the position change it made."""
    coin = market.coins[record[R_COIN]]
    trader = market.traders[record[R_TRADER]]
    delta = record[R_AFTER] - record[R_BEFORE]
    fill: dict[str, Any] = {
        "coin": coin.name, "px": fmt_px(coin, record[R_PX]), "sz": fmt_sz(coin, abs(delta)),
        "side": "B" if delta > 0 else "A", "time": record[R_TIME], "startPosition": fmt_sz(coin, record[R_BEFORE]),
        "dir": _dir(record, trader.isolated), "closedPnl": fmt_usd(record[R_CLOSED]), "hash": record[R_HASH],
        "oid": record[R_OID], "crossed": record[R_CROSSED], "fee": fmt_usd(record[R_FEE]), "tid": record[R_TID],
        "feeToken": "USDC"}
    liquidation = record[R_LIQUIDATION]
    if liquidation is not None:
        fill["liquidation"] = {"liquidatedUser": liquidation[0], "markPx": fmt_px(coin, liquidation[1]),
                               "method": liquidation[2]}
    return fill


def user_fills(market: Market, trader: Trader | None, limit: int = 2000) -> list[dict[str, Any]]:
    """The most recent fills, newest first."""
    if trader is None:
        return []
    fills = trader.fills
    out = []
    for i in range(len(fills) - 1, max(-1, len(fills) - 1 - limit), -1):
        out.append(user_fill(market, fills[i]))
    return out


def user_fills_by_time(market: Market, trader: Trader | None, start: int, end: int | None,
                       limit: int = 2000) -> list[dict[str, Any]]:
    """Fills with start <= time <= end, oldest first, at most `limit` (page on from the last time)."""
    if trader is None:
        return []
    out = []
    for record in trader.fills:
        t = record[R_TIME]
        if t < start:
            continue
        if end is not None and t > end:
            break
        out.append(user_fill(market, record))
        if len(out) >= limit:
            break
    return out


def portfolio(market: Market, trader: Trader | None, now_ms: int) -> list[list[Any]]:
    """Account value and PnL history per window: day, week, month, allTime, then the same for perps only."""
    if trader is None:
        points = [(now_ms, 0.0, 0.0, 0.0)]
    else:
        value = market.account_value(trader)
        points = [*trader.points, (now_ms, value, value - trader.capital, trader.volume)]
    windows: list[list[Any]] = []
    for name, span in _WINDOWS:
        chosen = points if span is None else [p for p in points if p[0] >= now_ms - span]
        if span is not None and len(chosen) < len(points):
            chosen = [points[len(points) - len(chosen) - 1], *chosen]  # the last point before the window
        first = chosen[0]
        body = {"accountValueHistory": [[p[0], fmt_usd(p[1])] for p in chosen],
                "pnlHistory": [[p[0], fmt_usd(p[2] - first[2])] for p in chosen],
                "vlm": fmt_num(chosen[-1][3] - first[3], 2)}
        windows.append([name, body])
    windows += [[f"perp{name[0].upper()}{name[1:]}", body] for name, body in list(windows)]
    return windows


# --- ground truth ---------------------------------------------------------------------------------------------
def truth_record(market: Market, record: list) -> dict[str, Any]:
    coin = market.coins[record[R_COIN]]
    before, after = record[R_BEFORE], record[R_AFTER]
    return {"seq": record[R_SEQ], "trader": market.traders[record[R_TRADER]].address, "coin": coin.name,
            "time": record[R_TIME], "tid": record[R_TID], "hash": record[R_HASH], "px": fmt_px(coin, record[R_PX]),
            "before": {"szi": fmt_sz(coin, before), "entryPx": _entry(coin, before, record[R_BEFORE_ENTRY])},
            "after": {"szi": fmt_sz(coin, after), "entryPx": _entry(coin, after, record[R_AFTER_ENTRY])},
            "liquidated": record[R_LIQUIDATED], "change": change_kind(before, after, record[R_LIQUIDATED])}
