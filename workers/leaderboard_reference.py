"""The leaderboard metrics (version 1) in plain Python, one trader at a time: the reference definition.

docs/metrics.md states the definitions in words; this module states them in code, and the set-based SQL in
:mod:`hyperfollow.workers.leaderboard_sql` must give exactly the same rows (the golden vectors and a randomized
cross-check run both). It is also the per-trader computation of the benchmark's baseline (the seed's way:
one trader at a time, in Python).

Arithmetic is exact (Decimal with 100 digits): sums and products of prices and sizes never round. A division
rounds half away from zero at 30 decimals, as PostgreSQL does for `numeric(60,30) / numeric`; a stored value
rounds half away from zero to its column's scale (8 decimals for USD, 10 for ratios).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any

__all__ = [
    "MAKER_FEE_RATE",
    "METRICS_VERSION",
    "NUMBER",
    "RATIO_LIMIT",
    "ROI_BASE_FLOOR_USD",
    "TAKER_FEE_RATE",
    "WINDOW_SPANS",
    "Fill",
    "Snapshot",
    "Trade",
    "WindowMetrics",
    "anchor_times",
    "compute_trader_metrics",
    "held_coins",
    "reconstruct_trades",
    "round_trips",
    "window_start",
]

#: Bump when a definition changes (docs/metrics.md keeps the history); stored in every row.
METRICS_VERSION = 1
#: Hyperliquid's base perpetuals fee schedule (tier 0): taker 0.045 %, maker 0.015 %. The public trades
#: stream carries no fees, so fees are estimated with these rates (`crossed` tells taker from maker).
TAKER_FEE_RATE = Decimal("0.00045")
MAKER_FEE_RATE = Decimal("0.00015")
#: ROI divides by max(starting account value, this): a dust account cannot top the ROI ranking.
ROI_BASE_FLOOR_USD = Decimal("100")
#: Ratios are clamped to what the columns (numeric(20,10)) hold.
RATIO_LIMIT = Decimal("9999999999")
#: A size the SQL can read as a number (the same pattern guards its cast).
NUMBER = re.compile(r"^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$")
#: Window name -> length; `all` has no start.
WINDOW_SPANS: dict[str, timedelta | None] = {"7d": timedelta(days=7), "30d": timedelta(days=30), "all": None}

_EXACT = Context(prec=100, rounding=ROUND_HALF_UP)
_DIVISION = Decimal("1e-30")
_USD = Decimal("1e-8")
_RATIO = Decimal("1e-10")
_ZERO = Decimal(0)
_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Fill:
    """The trader's side of one trade on the tape: B bought, A sold; `crossed` = taker."""

    coin: str
    side: str
    px: Decimal
    sz: Decimal
    time: datetime
    tid: int
    crossed: bool

    @property
    def signed_size(self) -> Decimal:
        return self.sz if self.side == "B" else -self.sz

    @property
    def fee_rate(self) -> Decimal:
        return TAKER_FEE_RATE if self.crossed else MAKER_FEE_RATE


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stored clearinghouse state: `held` is the set of coins with an open position, None when unknown."""

    timestamp: datetime
    account_value: Decimal | None
    total_notional: Decimal | None
    held: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Trade:
    """A round trip in one coin, from flat to flat; `closed_at` is None while it is open."""

    coin: str
    opened_at: datetime
    closed_at: datetime | None
    gross_pnl_usd: Decimal
    fees_usd: Decimal

    @property
    def net_pnl_usd(self) -> Decimal:
        return self.gross_pnl_usd - self.fees_usd


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """One `leaderboard_metrics` row's metric columns, rounded as stored."""

    window: str
    account_age_days: int
    total_volume_usd: Decimal
    trade_count: int
    win_count: int
    win_rate: Decimal
    realized_pnl_usd: Decimal
    fees_usd: Decimal
    max_profit_usd: Decimal
    max_loss_usd: Decimal
    roi: Decimal
    max_drawdown: Decimal
    avg_risk_ratio: Decimal
    low_sample: bool
    last_trade_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _zero_size(szi: Any) -> bool:
    text = str(szi) if isinstance(szi, str | int | float) and not isinstance(szi, bool) else ""
    return bool(NUMBER.fullmatch(text)) and Decimal(text) == 0


def held_coins(state_data: Any) -> frozenset[str] | None:
    """Coins with a position in a clearinghouseState (`assetPositions[].position.coin`, unless its `szi` is a
    number equal to zero); None if the list is missing or not a list (an unusable state never proves a
    position flat)."""
    if not isinstance(state_data, Mapping):
        return None
    positions = state_data.get("assetPositions")
    if not isinstance(positions, list):
        return None
    coins = set()
    for item in positions:
        position = item.get("position") if isinstance(item, Mapping) else None
        coin = position.get("coin") if isinstance(position, Mapping) else None
        if isinstance(coin, str) and not _zero_size(position.get("szi")):  # type: ignore[union-attr]
            coins.add(coin)
    return frozenset(coins)


def window_start(window: str, now: datetime) -> datetime | None:
    span = WINDOW_SPANS[window]
    return None if span is None else now - span


def _div(numerator: Decimal, denominator: Decimal) -> Decimal:
    return (numerator / denominator).quantize(_DIVISION, rounding=ROUND_HALF_UP)


def _seconds(delta: timedelta) -> Decimal:
    return Decimal(delta // _MICROSECOND).scaleb(-6)


def _usd(value: Decimal) -> Decimal:
    return value.quantize(_USD, rounding=ROUND_HALF_UP)


def _ratio(value: Decimal) -> Decimal:
    return min(max(value, -RATIO_LIMIT), RATIO_LIMIT).quantize(_RATIO, rounding=ROUND_HALF_UP)


def anchor_times(coins: Iterable[str], snapshots: Sequence[Snapshot], now: datetime) -> dict[str, list[datetime]]:
    """Per coin, the times at which we observed the trader flat in it: the first usable snapshot (at or before
    `now`) if it shows no position in the coin, and every usable snapshot that shows none where the previous
    usable one showed one (an observed close). `snapshots` in storage order (timestamp, then id).

    Our history starts when we first saw the trader, possibly in the middle of a position, and the public
    stream can drop fills; at an anchor the position is known to be flat, so the tape restarts from zero there.
    """
    wanted = list(coins)
    anchors: dict[str, list[datetime]] = {coin: [] for coin in wanted}
    previous: frozenset[str] | None = None
    for snap in snapshots:
        if snap.timestamp > now or snap.held is None:
            continue
        for coin in wanted:
            if coin not in snap.held and (previous is None or coin in previous):
                anchors[coin].append(snap.timestamp)
        previous = snap.held
    return anchors


def round_trips(fills: Sequence[Fill]) -> list[Trade]:
    """Cut one coin's fills (in tape order, starting flat) into round trips.

    A fill that takes the position through zero (a flip) is split at zero: the part up to zero closes the
    running trade, the rest opens the next one at the same price. PnL of a closed trade = Σ sells px·sz −
    Σ buys px·sz over its (split) fills, exactly; fees are estimated per fill at the base rates.
    """
    trades: list[Trade] = []
    position = _ZERO
    gross = fees = _ZERO
    opened_at: datetime | None = None
    coin = fills[0].coin if fills else ""
    for fill in fills:
        change = fill.signed_size
        after = position + change
        if position != 0 and position * after < 0:  # a flip: close at zero, open the remainder
            gross += position * fill.px
            fees += abs(position) * fill.px * fill.fee_rate
            trades.append(Trade(coin, opened_at or fill.time, fill.time, gross, fees))
            gross = -after * fill.px
            fees = abs(after) * fill.px * fill.fee_rate
            opened_at = fill.time
        else:
            if position == 0:
                gross = fees = _ZERO
                opened_at = fill.time
            gross -= change * fill.px
            fees += fill.sz * fill.px * fill.fee_rate
            if after == 0:
                trades.append(Trade(coin, opened_at or fill.time, fill.time, gross, fees))
        position = after
    if position != 0:
        trades.append(Trade(coin, opened_at or fills[-1].time, None, gross, fees))
    return trades


def reconstruct_trades(fills: Iterable[Fill], snapshots: Sequence[Snapshot], now: datetime) -> list[Trade]:
    """Every round trip after each coin's first anchor, fills up to `now`.

    The tape is cut at every anchor (a fill at an anchor's time is before it: the snapshot reflects it) and
    each piece starts flat. A trade still open when the next anchor comes is dropped: the exchange says flat,
    so the tape missed a fill and that trade's PnL is unknown. A trade open in the last piece is returned open.
    """
    by_coin: dict[str, list[Fill]] = {}
    for fill in fills:
        if fill.time <= now:
            by_coin.setdefault(fill.coin, []).append(fill)
    anchors = anchor_times(by_coin, snapshots, now)
    trades: list[Trade] = []
    with localcontext(_EXACT):
        for coin in sorted(by_coin):
            cuts = anchors[coin]
            pieces: dict[int, list[Fill]] = {}
            for fill in sorted(by_coin[coin], key=lambda f: (f.time, f.tid)):
                piece = sum(1 for cut in cuts if cut < fill.time)
                if piece:
                    pieces.setdefault(piece, []).append(fill)
            last = len(cuts)
            for piece, tape in pieces.items():
                trades.extend(t for t in round_trips(tape) if t.closed_at is not None or piece == last)
    return trades


def _account_points(series: Sequence[Snapshot], start: datetime | None) -> list[tuple[datetime, Snapshot]]:
    """The window's account-value series: the snapshot in force at the start (moved to the start), then the
    snapshots inside the window."""
    if start is None:
        return [(s.timestamp, s) for s in series]
    before = [s for s in series if s.timestamp <= start]
    points = [(start, before[-1])] if before else []
    return points + [(s.timestamp, s) for s in series if s.timestamp > start]


def _max_drawdown(points: Sequence[tuple[datetime, Snapshot]]) -> Decimal:
    worst = _ZERO
    peak: Decimal | None = None
    for _, snap in points:
        value = snap.account_value
        assert value is not None
        peak = value if peak is None else max(peak, value)
        if peak > 0:
            worst = max(worst, _div(peak - value, peak))
    return min(worst, Decimal(1))


def _time_weighted_risk(points: Sequence[tuple[datetime, Snapshot]], now: datetime) -> Decimal:
    weighted = seconds = _ZERO
    for index, (at, snap) in enumerate(points):
        until = points[index + 1][0] if index + 1 < len(points) else now
        value, notional = snap.account_value, snap.total_notional
        if value is None or value <= 0 or notional is None:
            continue
        duration = _seconds(until - at)
        weighted += _div(notional, value) * duration
        seconds += duration
    return _div(weighted, seconds) if seconds > 0 else _ZERO


def compute_trader_metrics(first_seen_at: datetime, fills: Iterable[Fill], snapshots: Sequence[Snapshot],
                           now: datetime, min_trades: int) -> dict[str, WindowMetrics]:
    """All windows' metrics of one trader. `snapshots` in storage order (timestamp, then id)."""
    fills = [f for f in fills if f.time <= now]
    with localcontext(_EXACT):
        ordered = sorted((s for s in snapshots if s.timestamp <= now), key=lambda s: s.timestamp)  # stable: id
        trades = [t for t in reconstruct_trades(fills, ordered, now) if t.closed_at is not None]
        series = [s for s in ordered if s.account_value is not None]
        age = max(0, (now - first_seen_at) // _DAY)
        result: dict[str, WindowMetrics] = {}
        for window in WINDOW_SPANS:
            start = window_start(window, now)

            def inside(at: datetime, start: datetime | None = start) -> bool:
                return start is None or at > start

            counted = [t for t in trades if inside(t.closed_at)]  # type: ignore[arg-type]
            nets = [t.net_pnl_usd for t in counted]
            wins = sum(1 for net in nets if net > 0)
            realized = sum(nets, _ZERO)
            points = _account_points(series, start)
            first_value = points[0][1].account_value if points else None
            roi = _div(realized, max(first_value, ROI_BASE_FLOOR_USD)) if first_value is not None else _ZERO
            result[window] = WindowMetrics(
                window=window,
                account_age_days=age,
                total_volume_usd=_usd(sum((f.px * f.sz for f in fills if inside(f.time)), _ZERO)),
                trade_count=len(counted),
                win_count=wins,
                win_rate=_ratio(_div(Decimal(wins), Decimal(len(counted)))) if counted else _ratio(_ZERO),
                realized_pnl_usd=_usd(realized),
                fees_usd=_usd(sum((t.fees_usd for t in counted), _ZERO)),
                max_profit_usd=_usd(max([*nets, _ZERO])),
                max_loss_usd=_usd(max([*(-n for n in nets), _ZERO])),
                roi=_ratio(roi),
                max_drawdown=_ratio(_max_drawdown(points)),
                avg_risk_ratio=_ratio(_time_weighted_risk(points, now)),
                low_sample=len(counted) < min_trades,
                last_trade_at=max((t.closed_at for t in counted), default=None),  # type: ignore[type-var]
            )
        return result
