"""The simulated market: a pure, deterministic model of traders, positions, fills and marks.

No I/O and no clock: callers pass the wall-clock time (ms) the trades happen at. For a given seed and
configuration the sequence of trades (who, which coin, side, price, size) is always the same; only the
timestamps differ between runs. Runtime controls (listing or delisting a coin) change the sequence from
that point on.

How a trade happens. A taker is drawn by Zipf-like activity, then one of its favourite coins. It decides on
an order from its position there (open, add, reduce, close, flip, or hold) — traders with more *skill* know
the sign of the coin's current drift more often, so they open with it and get out when it turns, which is
what makes their win rates higher. The order fills against one to `max_fills_per_order` makers (market
makers most of the time, anyone else otherwise), each fill one trade on the tape. Every fill moves the mark a
little (drift regime + noise + pull to the coin's base price). A position whose liquidation price the mark
crosses is closed at once through a fill against the backstop liquidator (its `liquidation` object names the
liquidated user). A trader whose equity fell under a fifth of its initial deposit deposits again.

Positions are kept in integer lots (size = lots × 10^-szDecimals), so sizes are exact; prices are floats
rounded to the exchange's tick rules (5 significant figures, at most 6 − szDecimals decimals). A position's
entry price is the size-weighted average on increases, unchanged on reductions, the fill price after a flip;
realized PnL is booked on the reduced part: `(px − entry) × closed size × sign`.

Ground truth. Every change of a position (one per fill of one user) produces one record, a plain list
(see `RECORD_FIELDS`): seq, time, trader index, coin index, lots and entry before, lots and entry after, tid,
liquidated, hash, then the fill's px, oid, crossed, fee and closed PnL. The same record is the user's fill;
`wire.truth_record` and `wire.user_fill` format it for the outside world.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from bisect import bisect_right
from collections import deque
from itertools import accumulate

from hyperfollow.sim.config import SimConfig

__all__ = ["MAKER_FEE", "REAL_COINS", "RECORD_FIELDS", "TAKER_FEE", "TRADE_FIELDS", "Coin", "Market", "Position",
           "Trade", "Trader"]

TAKER_FEE = 0.00045
MAKER_FEE = 0.00015

#: (name, reference price, szDecimals, maxLeverage): the first coins, in the exchange's own spelling.
REAL_COINS: tuple[tuple[str, float, int, int], ...] = (
    ("BTC", 97000.0, 5, 40), ("ETH", 3500.0, 4, 25), ("SOL", 180.0, 2, 20), ("XRP", 2.5, 0, 20),
    ("DOGE", 0.32, 0, 10), ("HYPE", 25.0, 2, 10), ("AVAX", 35.0, 2, 10), ("LINK", 20.0, 1, 10),
    ("SUI", 4.0, 1, 10), ("BNB", 650.0, 3, 10), ("ADA", 0.9, 0, 10), ("LTC", 100.0, 2, 10),
    ("DOT", 7.0, 1, 10), ("ARB", 0.8, 1, 10), ("OP", 2.0, 1, 10), ("APT", 9.0, 2, 10),
    ("NEAR", 5.0, 1, 10), ("AAVE", 300.0, 2, 10), ("TIA", 5.0, 1, 10), ("WIF", 2.0, 0, 10),
    ("kPEPE", 0.015, 0, 10), ("INJ", 25.0, 1, 10), ("SEI", 0.5, 0, 10), ("TRX", 0.25, 0, 10),
    ("ATOM", 7.0, 2, 10), ("FIL", 5.0, 1, 10), ("ENA", 0.9, 0, 10), ("ONDO", 1.4, 0, 10),
    ("TAO", 450.0, 3, 10), ("WLD", 2.5, 1, 10), ("JUP", 1.0, 0, 10), ("PENDLE", 5.0, 0, 10),
)

_LEVERAGES = (1, 2, 3, 5, 5, 10, 10, 10, 20, 20, 25, 40, 50)
_SIGMA = 1e-4          # per-fill relative noise of a mark
_DRIFT = 1.5e-5         # per-fill drift in a trending regime
_REGIME_SWITCH = 1 / 2500
_REVERSION = 2e-4      # pull of log(mark / base) back to 0 per fill
_HALF_SPREAD = 1e-4
_MM_SHARE = 0.85       # share of maker fills that market makers take


def _address(seed: int, label: str) -> str:
    return "0x" + hashlib.sha256(f"hyperfollow-sim:{seed}:{label}".encode()).hexdigest()[:40]


class Coin:
    __slots__ = ("base", "dec", "dec_hi", "dec_lo", "index", "listed", "lot", "mark", "max_leverage", "mmr", "name",
                 "regime", "sz_decimals")

    def __init__(self, index: int, name: str, price: float, sz_decimals: int, max_leverage: int) -> None:
        self.index = index
        self.name = name
        self.sz_decimals = sz_decimals
        self.max_leverage = max_leverage
        self.lot = 10.0 ** -sz_decimals
        self.base = price
        self.dec, self.dec_lo, self.dec_hi = 0, 0.0, 0.0
        self.mark = self.round_px(price)
        self.regime = 0          # -1, 0, +1: the sign of the drift skilled traders know
        self.listed = True
        self.mmr = 1.0 / (2 * max_leverage)   # maintenance margin: half the initial margin at max leverage

    def round_px(self, price: float) -> float:
        """Round to a valid price (the decimals are cached for the current power of ten)."""
        if not self.dec_lo <= price < self.dec_hi:
            digits = math.floor(math.log10(price)) + 1
            self.dec = max(0, min(6 - self.sz_decimals, 5 - digits))
            self.dec_lo, self.dec_hi = 10.0 ** (digits - 1), 10.0 ** digits
        return round(price, self.dec)


class Position:
    __slots__ = ("entry", "leverage", "liq_px", "lots", "version")

    def __init__(self) -> None:
        self.lots = 0
        self.entry = 0.0
        self.version = 0
        self.leverage = 1
        self.liq_px = 0.0


class Trader:
    __slots__ = ("address", "capital", "favourites", "fees", "fills", "index", "initial", "is_liquidator", "is_maker",
                 "isolated",
                 "last_point", "leverage", "points", "positions", "realized", "skill", "volume")

    def __init__(self, index: int, address: str) -> None:
        self.index = index
        self.address = address
        self.skill = 0.0
        self.leverage = 1
        self.isolated = False
        self.initial = 0.0
        self.capital = 0.0       # everything ever deposited
        self.realized = 0.0      # sum of closedPnl
        self.fees = 0.0          # sum of fees paid
        self.volume = 0.0        # traded notional
        self.positions: dict[int, Position] = {}
        self.fills: deque[list] = deque()   # this trader's records (see RECORD_FIELDS), oldest first
        self.points: deque[tuple[int, float, float, float]] = deque(maxlen=2000)  # (ms, value, pnl, volume)
        self.last_point = 0
        self.favourites: tuple[int, ...] = ()
        self.is_maker = False
        self.is_liquidator = False

    def equity(self) -> float:
        """Deposits plus realized PnL minus fees (the account value without unrealized PnL)."""
        return self.capital + self.realized - self.fees


#: A trade on the public tape is a plain tuple (fast to build): these are its fields in order.
#: `taker_buys` is the taker's side; `buyer`/`seller` are trader indexes.
#: `seq` is the seq of the trade's first record (the taker's); the maker's is seq + 1.
TRADE_FIELDS = ("coin", "taker_buys", "px", "lots", "time", "hash", "tid", "buyer", "seller", "seq")
T_COIN, T_TAKER_BUYS, T_PX, T_LOTS, T_TIME, T_HASH, T_TID, T_BUYER, T_SELLER, T_SEQ = range(10)
Trade = tuple

#: One record per position change = per fill of one user (a list: its time is set again when a pre-generated
#: trade is emitted later). It is both the truth record and the user's fill:
#: (seq, time, trader, coin, lots before, entry before, lots after, entry after, tid, liquidated (this user
#: was liquidated), hash, px, oid, crossed, fee, closed PnL, liquidation (None or (address, mark, method))).
RECORD_FIELDS = ("seq", "time", "trader", "coin", "before_lots", "before_entry", "after_lots", "after_entry",
                 "tid", "liquidated", "hash", "px", "oid", "crossed", "fee", "closed_pnl", "liquidation")
(R_SEQ, R_TIME, R_TRADER, R_COIN, R_BEFORE, R_BEFORE_ENTRY, R_AFTER, R_AFTER_ENTRY, R_TID, R_LIQUIDATED, R_HASH,
 R_PX, R_OID, R_CROSSED, R_FEE, R_CLOSED, R_LIQUIDATION) = range(17)


class Market:
    """The whole simulated exchange state. Not thread-safe: one owner (the server's event loop)."""

    def __init__(self, config: SimConfig, start_ms: int = 0) -> None:
        self.config = config
        self.seed = config.seed
        self.rng = random.Random(config.seed)
        self.start_ms = start_ms
        self._ids = random.Random(f"ids:{config.seed}")   # hashes and tids: a stream of their own
        self.coins: list[Coin] = []
        for i in range(config.coins):
            self.coins.append(self._make_coin(i, None))
        self.by_name = {c.name: c for c in self.coins}
        self.traders: list[Trader] = []
        self.by_address: dict[str, Trader] = {}
        self._make_population()
        self.truth: list[list] = []     # the newest records; truth[0] has seq `truth_base`
        self.truth_base = 0
        self.truth_seq = 0               # seq of the next record
        self.seen: set[int] = set()
        self.trades_made = 0
        self.orders_made = 0
        self.liquidations = 0
        self.deposits = 0
        self._oid = 1_000_000
        self._long_heaps: list[list[tuple[float, int, int]]] = [[] for _ in self.coins]
        self._short_heaps: list[list[tuple[float, int, int]]] = [[] for _ in self.coins]
        self._live: list[int] = [0 for _ in self.coins]
        self.point_ms = int(config.portfolio_interval_s * 1000)
        self._rebuild_coin_weights()

    # --- construction -----------------------------------------------------------------------------------------
    def _make_coin(self, index: int, name: str | None) -> Coin:
        if name is None and index < len(REAL_COINS):
            name, price, sz_dec, max_lev = REAL_COINS[index]
            return Coin(index, name, price, sz_dec, max_lev)
        # A synthetic coin: its own random stream, so listing one never perturbs the market's sequence.
        label = name or f"SIM{index + 1}"
        rng = random.Random(f"{self.seed}:{label}")
        price = round(math.exp(rng.uniform(math.log(0.05), math.log(5000))), 6)
        sz_dec = 0 if price < 2 else 1 if price < 20 else 2 if price < 500 else 3
        return Coin(index, label, price, sz_dec, rng.choice((3, 5, 10, 10, 20)))

    def _make_population(self) -> None:
        cfg, rng = self.config, self.rng
        n = cfg.traders
        makers = round(n * cfg.market_maker_fraction)
        if cfg.market_maker_fraction > 0 and n >= 10:
            makers = max(1, makers)
        coin_cum = list(accumulate(1.0 / (k + 1) for k in range(len(self.coins))))
        for i in range(n):
            trader = Trader(i, _address(self.seed, str(i)))
            trader.is_maker = i < makers
            trader.skill = rng.betavariate(1.2, 3.0)
            if trader.is_maker:
                trader.leverage, trader.initial = 3, round(rng.uniform(2e6, 2e7), 2)
            else:
                trader.leverage = rng.choice(_LEVERAGES)
                trader.initial = round(max(300.0, math.exp(rng.gauss(math.log(20_000), 1.3))), 2)
            trader.isolated = (not trader.is_maker) and rng.random() < 0.25
            favourites = {min(bisect_right(coin_cum, rng.random() * coin_cum[-1]), len(coin_cum) - 1)
                          for _ in range(rng.randint(1, 3))}
            trader.favourites = tuple(sorted(favourites))
            trader.capital = trader.initial
            trader.fills = deque(maxlen=cfg.fill_history)
            trader.points.append((self.start_ms, trader.initial, 0.0, 0.0))
            trader.last_point = self.start_ms
            self.traders.append(trader)
        # activity rank: a seeded permutation, so the busiest traders are not simply the first addresses
        ranks = list(range(n))
        rng.shuffle(ranks)
        weights = [0.0] * n
        for rank, index in enumerate(ranks):
            weights[index] = 1.0 / (rank + 1) ** cfg.zipf_exponent
        self._activity_cum = list(accumulate(weights))
        self._makers = list(range(makers))
        liquidator = Trader(n, _address(self.seed, "liquidator"))
        liquidator.initial = liquidator.capital = 1e9
        liquidator.leverage = 1
        liquidator.is_liquidator = True
        liquidator.fills = deque(maxlen=cfg.fill_history)
        liquidator.points.append((self.start_ms, liquidator.initial, 0.0, 0.0))
        self.traders.append(liquidator)
        self.liquidator = liquidator
        for trader in self.traders:
            self.by_address[trader.address] = trader

    def _rebuild_coin_weights(self) -> None:
        listed = [c.index for c in self.coins if c.listed]
        self._listed = listed
        self._coin_cum = list(accumulate(1.0 / (k + 1) for k in range(len(listed))))

    # --- runtime listings -------------------------------------------------------------------------------------
    def list_coin(self, name: str | None = None) -> Coin:
        """List a new perp (or re-list a delisted one). Trading in it starts with the next order."""
        if name is not None and name in self.by_name:
            coin = self.by_name[name]
            coin.listed = True
        else:
            coin = self._make_coin(len(self.coins), name)
            if coin.name in self.by_name:
                raise ValueError(f"coin {coin.name} exists")
            self.coins.append(coin)
            self.by_name[coin.name] = coin
            self._long_heaps.append([])
            self._short_heaps.append([])
            self._live.append(0)
        self._rebuild_coin_weights()
        return coin

    def delist_coin(self, name: str) -> Coin:
        """Stop trading a perp (meta shows `isDelisted`); open positions stay as they are."""
        coin = self.by_name.get(name)
        if coin is None:
            raise KeyError(name)
        coin.listed = False
        self._rebuild_coin_weights()
        return coin

    # --- runtime marks ----------------------------------------------------------------------------------------
    def set_mark(self, name: str, px: float, now_ms: int) -> list[Trade]:
        """Move a coin's mark to `px` (rounded to a valid price) and liquidate every position it crosses.

        The liquidations are ordinary ones (a fill against the backstop at the new mark, with truth records);
        they are the returned trades. Like a listing, this changes the trade sequence from here on.
        """
        coin = self.by_name.get(name)
        if coin is None:
            raise KeyError(name)
        if not (math.isfinite(px) and px > 0):
            raise ValueError(f"not a price: {px!r}")
        coin.mark = coin.round_px(px)
        out: list[Trade] = []
        self._liquidate_crossed(coin, now_ms, out)
        self._bound_truth()
        return out

    # --- generation -------------------------------------------------------------------------------------------
    def generate(self, count: int, now_ms: int) -> list[Trade]:
        """Make whole orders until at least `count` trades happened; return the trades in order."""
        out: list[Trade] = []
        if not self._listed:
            return out
        while len(out) < count:
            self._order(now_ms, out)
        self._bound_truth()
        return out

    def _bound_truth(self) -> None:
        """Keep the truth records within `truth_limit` (trimming to 90 % so it is not done on every call)."""
        limit = self.config.truth_limit
        if limit and len(self.truth) > limit:
            self.trim_truth(int(limit * 0.9))

    def _pick_coin(self, trader: Trader) -> Coin:
        rng = self.rng
        if rng.random() < 0.85:
            coin = self.coins[trader.favourites[int(rng.random() * len(trader.favourites))]]
            if coin.listed:
                return coin
        cum = self._coin_cum
        return self.coins[self._listed[min(bisect_right(cum, rng.random() * cum[-1]), len(cum) - 1)]]

    def _pick_trader(self) -> Trader:
        cum = self._activity_cum
        return self.traders[min(bisect_right(cum, self.rng.random() * cum[-1]), len(cum) - 1)]

    def _target_lots(self, trader: Trader, coin: Coin, fraction: float) -> int:
        leverage = min(trader.leverage, coin.max_leverage)
        notional = max(12.0, trader.equity() * leverage * fraction)
        return max(1, math.ceil(notional / (coin.mark * coin.lot)))

    def _order(self, now: int, out: list[Trade]) -> None:
        rng = self.rng
        taker = self._pick_trader()
        coin = self._pick_coin(taker)
        ci = coin.index
        liquidator = self.liquidator
        held = liquidator.positions.get(ci)
        if held is not None and rng.random() < 0.03:
            # the backstop unwinds what it took over from liquidations
            self._fill_order(liquidator, coin, -held.lots, now, out)
            return
        if taker.equity() < 0.2 * taker.initial:
            taker.capital += taker.initial
            self.deposits += 1
        pos = taker.positions.get(ci)
        lots = pos.lots if pos is not None else 0
        informed = rng.random() < taker.skill
        if lots == 0:
            side = coin.regime if informed and coin.regime else (1 if rng.random() < 0.5 else -1)
            delta = side * self._target_lots(taker, coin, rng.uniform(0.05, 0.4))
        else:
            side = 1 if lots > 0 else -1
            u = rng.random()
            if informed and coin.regime == side:
                if u < 0.6:
                    return                      # hold a winning position
                action = "add"
            elif informed and coin.regime == -side:
                action = "close" if u < 0.6 else "flip"
            elif informed:                              # no trend: take a profit, sit out a loss
                if (coin.mark - pos.entry) * side <= 0:  # type: ignore[union-attr]
                    return
                action = "close"
            elif u < 0.25:
                action = "add"
            elif u < 0.5:
                action = "reduce"
            elif u < 0.85:
                action = "close"
            else:
                action = "flip"
            if action == "add":
                exposure = abs(lots) * coin.lot * coin.mark
                if exposure > taker.equity() * min(taker.leverage, coin.max_leverage):
                    action = "reduce"
                else:
                    delta = side * self._target_lots(taker, coin, rng.uniform(0.03, 0.2))
            if action == "reduce":
                size = abs(lots)
                delta = -side * (1 + int(rng.random() * (size - 1))) if size > 1 else -lots
            elif action == "close":
                delta = -lots
            elif action == "flip":
                delta = -lots - side * self._target_lots(taker, coin, rng.uniform(0.05, 0.3))
        self._fill_order(taker, coin, delta, now, out)

    def _fill_order(self, taker: Trader, coin: Coin, delta: int, now: int, out: list[Trade]) -> None:
        """Fill a taker order of `delta` lots against makers: one trade per maker fill.

        Market makers absorb any size; another trader as maker takes at most what it would trade itself,
        so small accounts are not handed positions they could never carry.
        """
        rng = self.rng
        self.orders_made += 1
        self._oid += 1
        taker_oid = self._oid
        order_hash = f"0x{self._ids.getrandbits(256):064x}"
        buys = delta > 0
        remaining = delta if buys else -delta
        fills = 1 + int(rng.random() * self.config.max_fills_per_order)
        if fills > remaining:
            fills = remaining
        makers = self._makers
        traders = self.traders
        mark = coin.mark
        for i in range(fills):
            left = fills - 1 - i            # fills still to come, each needs a lot
            if left == 0:
                size = remaining
            else:
                size = int(remaining * (0.2 + 0.5 * rng.random())) or 1
                if size > remaining - left:
                    size = remaining - left
            if makers and (left == 0 or rng.random() < _MM_SHARE):
                maker = traders[makers[int(rng.random() * len(makers))]]
            else:
                maker = self._pick_trader()
                if makers and left:
                    cap = self._target_lots(maker, coin, 0.3)
                    if size > cap:
                        size = cap
            if maker is taker:
                maker = traders[(taker.index + 1) % self.config.traders]
            remaining -= size
            price = mark * (1 + _HALF_SPREAD * (i + 1)) if buys else mark * (1 - _HALF_SPREAD * (i + 1))
            self._trade(coin, taker, maker, buys, size, coin.round_px(price), now, taker_oid, order_hash, out, None)
            self._move_mark(coin)
            self._liquidate_crossed(coin, now, out)
        if remaining:   # sizes capped by small makers: the rest goes to a market maker
            maker = traders[makers[int(rng.random() * len(makers))]]
            if maker is taker:
                maker = traders[(taker.index + 1) % self.config.traders]
            price = mark * (1 + _HALF_SPREAD * (fills + 1)) if buys else mark * (1 - _HALF_SPREAD * (fills + 1))
            self._trade(coin, taker, maker, buys, remaining, coin.round_px(price), now, taker_oid, order_hash, out,
                        None)
            self._move_mark(coin)
            self._liquidate_crossed(coin, now, out)

    def _trade(self, coin: Coin, taker: Trader, maker: Trader, taker_buys: bool, lots: int, px: float, now: int,
               taker_oid: int, order_hash: str, out: list[Trade], liquidation: tuple | None) -> None:
        self.trades_made += 1
        tid = self._ids.getrandbits(50)
        self._oid += 1
        signed = lots if taker_buys else -lots
        seq = self.truth_seq
        self._apply(taker, coin, signed, px, now, True, taker_oid, tid, order_hash, liquidation)
        self._apply(maker, coin, -signed, px, now, False, self._oid, tid, order_hash, liquidation)
        seen = self.seen
        seen.add(taker.index)
        seen.add(maker.index)
        if taker_buys:
            out.append((coin.index, True, px, lots, now, order_hash, tid, taker.index, maker.index, seq))
        else:
            out.append((coin.index, False, px, lots, now, order_hash, tid, maker.index, taker.index, seq))

    def _apply(self, trader: Trader, coin: Coin, delta: int, px: float, now: int, crossed: bool, oid: int, tid: int,
               order_hash: str, liquidation: tuple | None) -> None:
        """Apply one fill to one trader: position, entry, realized PnL, fee, record, liquidation heap."""
        ci = coin.index
        positions = trader.positions
        pos = positions.get(ci)
        if pos is None:
            old, entry = 0, 0.0
        else:
            old, entry = pos.lots, pos.entry
        new = old + delta
        lot = coin.lot
        closed = 0.0
        if old == 0:
            new_entry = px
        elif (old > 0) == (delta > 0):
            new_entry = (entry * old + px * delta) / new     # same signs: the size-weighted average
        else:
            if old > 0:
                closing = old if old < -delta else -delta
                closed = (px - entry) * closing * lot
            else:
                closing = -old if -old < delta else delta
                closed = (entry - px) * closing * lot
            if new == 0:
                new_entry = 0.0
            elif (new > 0) == (old > 0):
                new_entry = entry
            else:
                new_entry = px
        size = delta if delta > 0 else -delta
        notional = size * lot * px
        fee = notional * (TAKER_FEE if crossed else MAKER_FEE)
        trader.realized += closed
        trader.fees += fee
        trader.volume += notional
        seq = self.truth_seq
        self.truth_seq = seq + 1
        record = [seq, now, trader.index, ci, old, entry, new, new_entry, tid,
                  liquidation is not None and liquidation[0] == trader.address, order_hash, px, oid, crossed, fee,
                  closed, liquidation]
        self.truth.append(record)
        trader.fills.append(record)
        if new == 0:
            del positions[ci]
            self._live[ci] -= 1
        else:
            if pos is None:
                pos = positions[ci] = Position()
                self._live[ci] += 1
            pos.lots = new
            pos.entry = new_entry
            pos.version = seq            # a position's version: the seq of its last change
            if trader.is_liquidator:
                pos.leverage = 1
                pos.liq_px = 0.0
            else:
                leverage = trader.leverage if trader.leverage < coin.max_leverage else coin.max_leverage
                pos.leverage = leverage
                if new > 0:
                    liq = pos.liq_px = new_entry * (1 - 1.0 / leverage + coin.mmr)
                    heapq.heappush(self._long_heaps[ci], (-liq, seq, trader.index))
                else:
                    liq = pos.liq_px = new_entry * (1 + 1.0 / leverage - coin.mmr)
                    heapq.heappush(self._short_heaps[ci], (liq, seq, trader.index))
        if now - trader.last_point >= self.point_ms:
            trader.last_point = now
            value = self.account_value(trader)
            trader.points.append((now, value, value - trader.capital, trader.volume))

    def _move_mark(self, coin: Coin) -> None:
        rng = self.rng
        r = rng.random()
        if r < _REGIME_SWITCH:
            coin.regime = (-1, 0, 1)[int(r / _REGIME_SWITCH * 3)]
        mark = coin.mark
        noise = (rng.random() - 0.5) * 3.4641016151377544   # uniform with unit variance
        step = _DRIFT * coin.regime - _REVERSION * math.log(mark / coin.base) + _SIGMA * noise
        coin.mark = coin.round_px(mark * (1.0 + step))

    def _liquidate_crossed(self, coin: Coin, now: int, out: list[Trade]) -> None:
        ci, mark = coin.index, coin.mark
        longs, shorts = self._long_heaps[ci], self._short_heaps[ci]
        if longs and -longs[0][0] >= mark:
            self._pop_crossed(coin, longs, lambda top: -top >= mark, now, out)
        if shorts and shorts[0][0] <= mark:
            self._pop_crossed(coin, shorts, lambda top: top <= mark, now, out)
        if len(longs) + len(shorts) > 4 * self._live[ci] + 1024:
            self._compact(ci)

    def _pop_crossed(self, coin: Coin, heap: list, crossed: object, now: int, out: list[Trade]) -> None:
        ci, traders = coin.index, self.traders
        while heap and crossed(heap[0][0]):  # type: ignore[operator]
            _, version, index = heapq.heappop(heap)
            pos = traders[index].positions.get(ci)
            if pos is not None and pos.version == version:
                self._liquidate(traders[index], coin, pos, now, out)

    def _liquidate(self, trader: Trader, coin: Coin, pos: Position, now: int, out: list[Trade]) -> None:
        """Close a position whose liquidation price was crossed, at the mark, against the backstop."""
        self.liquidations += 1
        self.orders_made += 1
        self._oid += 1
        liquidation = (trader.address, coin.mark, "market")
        size = pos.lots if pos.lots > 0 else -pos.lots
        self._trade(coin, trader, self.liquidator, pos.lots < 0, size, coin.mark, now, self._oid,
                    f"0x{self._ids.getrandbits(256):064x}", out, liquidation)

    def _compact(self, ci: int) -> None:
        traders = self.traders

        def valid(entry: tuple[float, int, int]) -> bool:
            pos = traders[entry[2]].positions.get(ci)
            return pos is not None and pos.version == entry[1]

        for heaps in (self._long_heaps, self._short_heaps):
            kept = [e for e in heaps[ci] if valid(e)]
            heapq.heapify(kept)
            heaps[ci] = kept

    # --- reading ----------------------------------------------------------------------------------------------
    def unrealized(self, trader: Trader) -> float:
        coins = self.coins
        return sum(p.lots * coins[ci].lot * (coins[ci].mark - p.entry) for ci, p in trader.positions.items())

    def account_value(self, trader: Trader) -> float:
        return trader.equity() + self.unrealized(trader)

    def trader(self, address: str) -> Trader | None:
        return self.by_address.get(address.lower())

    def truth_since(self, after_seq: int = -1) -> list[list]:
        """Records with seq > after_seq that are still held (see `trim_truth`)."""
        return self.truth[max(0, after_seq + 1 - self.truth_base):]

    def trim_truth(self, keep: int) -> int:
        """Forget all but the newest `keep` records (a memory bound for long runs); return how many went."""
        excess = len(self.truth) - keep
        if excess <= 0:
            return 0
        del self.truth[:excess]
        self.truth_base += excess
        return excess
