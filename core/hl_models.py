"""Typed models of the exchange's answers, and the parsers that turn raw JSON into them.

The exchange sends numbers as strings ("26951.0") and has grown its shapes over the years, so the models:

- parse money, prices and sizes to :class:`~decimal.Decimal` (never float), rejecting NaN/Infinity;
- accept a number where a string is documented (and vice versa for integers) — lax, but never lossy;
- tolerate missing optional keys and keep unknown extra keys (``extra="allow"``), so a stored snapshot
  (`model_dump(by_alias=True, mode="json")`) still holds everything the exchange said.

Every ``parse_*`` function raises :class:`~hyperfollow.core.errors_exchange.MalformedResponse` carrying the
request type and a truncated body, never a bare pydantic or key error. Trades from the WebSocket are parsed
one by one by :func:`parse_trade` (a plain slotted dataclass: discovery handles many of them) and a bad one
raises :class:`~hyperfollow.core.errors_exchange.InvalidTrade`, which the caller counts and skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from hyperfollow.core.addresses import ADDRESS_PATTERN, InvalidAddress, normalise_address
from hyperfollow.core.errors_exchange import InvalidTrade, MalformedResponse

__all__ = [
    "AllMids",
    "AssetMeta",
    "AssetPosition",
    "ClearinghouseState",
    "CumFunding",
    "Fill",
    "FillLiquidation",
    "Leverage",
    "MarginSummary",
    "Meta",
    "Portfolio",
    "PortfolioPeriod",
    "Position",
    "Trade",
    "parse_all_mids",
    "parse_clearinghouse_state",
    "parse_fills",
    "parse_meta",
    "parse_portfolio",
    "parse_recent_trades",
    "parse_trade",
    "parse_trades",
]

#: A finite decimal (money, price, size). Strings, ints and floats are accepted; NaN and Infinity are not.
Num = Annotated[Decimal, Field(allow_inf_nan=False)]


class _Wire(BaseModel):
    """Base of the exchange's objects: camelCase on the wire, snake_case here, unknown keys kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON form with the exchange's key names: what it sent (numbers as strings, unknown keys kept,
        absent optional keys still absent)."""
        return self.model_dump(by_alias=True, mode="json", exclude_unset=True)


# --- meta ----------------------------------------------------------------------------------------------------
class AssetMeta(_Wire):
    name: str = Field(min_length=1)
    sz_decimals: int = Field(ge=0)
    max_leverage: int = Field(gt=0)
    only_isolated: bool = False
    is_delisted: bool = False


class Meta(_Wire):
    universe: list[AssetMeta]

    @property
    def coins(self) -> list[str]:
        """The perps one can trade now (delisted ones dropped), in the exchange's order."""
        return [asset.name for asset in self.universe if not asset.is_delisted]


# --- clearinghouseState ----------------------------------------------------------------------------------------
class Leverage(_Wire):
    type: str  # "cross" | "isolated" (kept open: a new mode must not break tracking)
    value: int = Field(gt=0)
    raw_usd: Num | None = None


class CumFunding(_Wire):
    all_time: Num
    since_open: Num
    since_change: Num


class Position(_Wire):
    coin: str = Field(min_length=1)
    szi: Num  # signed size: > 0 long, < 0 short
    entry_px: Num | None = None
    position_value: Num = Decimal(0)
    unrealized_pnl: Num = Decimal(0)
    return_on_equity: Num | None = None
    leverage: Leverage | None = None
    liquidation_px: Num | None = None
    margin_used: Num = Decimal(0)
    max_leverage: int | None = None
    cum_funding: CumFunding | None = None

    @property
    def side(self) -> Literal["long", "short", "flat"]:
        return "long" if self.szi > 0 else "short" if self.szi < 0 else "flat"

    @property
    def size(self) -> Decimal:
        """Absolute size."""
        return abs(self.szi)


class AssetPosition(_Wire):
    type: str = "oneWay"
    position: Position


class MarginSummary(_Wire):
    account_value: Num
    total_ntl_pos: Num = Decimal(0)
    total_raw_usd: Num = Decimal(0)
    total_margin_used: Num = Decimal(0)


class ClearinghouseState(_Wire):
    """A trader's perp account. An unknown address is an empty account, not an error.

    `assetPositions` and `marginSummary` are required: a body without them (`{}`, an error object) must not
    read as "every position closed", which would make the tracker invent close events.
    """

    asset_positions: list[AssetPosition]
    margin_summary: MarginSummary
    cross_margin_summary: MarginSummary | None = None
    cross_maintenance_margin_used: Num | None = None
    withdrawable: Num | None = None
    time: int | None = None  # ms; older answers have none

    @model_validator(mode="after")
    def _one_position_per_coin(self) -> ClearinghouseState:
        seen: set[str] = set()
        for item in self.asset_positions:
            if item.position.coin in seen:
                raise ValueError(f"coin {item.position.coin!r} appears twice in assetPositions")
            seen.add(item.position.coin)
        return self

    @property
    def positions(self) -> dict[str, Position]:
        """Open positions by coin (a zero size, which the exchange may list transiently, is flat)."""
        return {item.position.coin: item.position for item in self.asset_positions if item.position.szi != 0}

    @property
    def account_value(self) -> Decimal:
        return self.margin_summary.account_value


# --- fills -----------------------------------------------------------------------------------------------------
class FillLiquidation(_Wire):
    liquidated_user: str | None = None
    mark_px: Num | None = None
    method: str | None = None  # "market" | "backstop"


class Fill(_Wire):
    """One of a trader's fills (`userFills`, `userFillsByTime`)."""

    coin: str = Field(min_length=1)
    px: Num
    sz: Num = Field(ge=0)
    side: Literal["B", "A"]
    time: int = Field(ge=0)
    start_position: Num
    dir: str  # "Open Long", "Close Short", "Long > Short", "Short > Long", "Buy"/"Sell" (spot), ...
    closed_pnl: Num = Decimal(0)
    hash: str = ""
    oid: int
    crossed: bool = False  # True: this fill took liquidity
    fee: Num = Decimal(0)
    fee_token: str | None = None
    tid: int | None = None
    builder_fee: Num | None = None
    liquidation: FillLiquidation | None = None
    cloid: str | None = None
    twap_id: int | None = None

    @property
    def is_liquidation(self) -> bool:
        return self.liquidation is not None

    @property
    def is_flip(self) -> bool:
        """Long to short (or back) in one fill."""
        return ">" in self.dir

    @property
    def signed_sz(self) -> Decimal:
        return self.sz if self.side == "B" else -self.sz

    @property
    def end_position(self) -> Decimal:
        """The signed position right after this fill (`startPosition` is the one before it)."""
        return self.start_position + self.signed_sz


# --- portfolio -------------------------------------------------------------------------------------------------
class PortfolioPeriod(_Wire):
    account_value_history: list[tuple[int, Num]] = Field(default_factory=list)
    pnl_history: list[tuple[int, Num]] = Field(default_factory=list)
    vlm: Num = Decimal(0)


class Portfolio(BaseModel):
    """`portfolio`: the exchange's list of `[period, {...}]` pairs, as a mapping by period name."""

    model_config = ConfigDict(frozen=True)

    periods: dict[str, PortfolioPeriod]

    def __getitem__(self, period: str) -> PortfolioPeriod:
        return self.periods[period]

    @field_validator("periods", mode="before")
    @classmethod
    def _from_pairs(cls, value: Any) -> Any:
        if isinstance(value, list):
            pairs: dict[str, Any] = {}
            for item in value:
                if not (isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str)):
                    raise ValueError("each portfolio item must be a [period, object] pair")
                pairs[item[0]] = item[1]
            return pairs
        return value


AllMids = dict[str, Decimal]

# --- parsers ---------------------------------------------------------------------------------------------------
_META = TypeAdapter(Meta)
_STATE = TypeAdapter(ClearinghouseState)
_FILLS = TypeAdapter(list[Fill])
_MIDS = TypeAdapter(dict[str, Num])
M = TypeVar("M")


def _describe(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _validate(adapter: TypeAdapter[M], request_type: str, body: Any) -> M:
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        raise MalformedResponse(request_type, body, _describe(exc)) from None


def parse_meta(body: Any) -> Meta:
    return _validate(_META, "meta", body)


def parse_clearinghouse_state(body: Any) -> ClearinghouseState:
    if body is None:  # what the exchange answers for some unknown-user reads; never for a real account
        raise MalformedResponse("clearinghouseState", body, "null body")
    return _validate(_STATE, "clearinghouseState", body)


def parse_fills(body: Any, request_type: str = "userFills") -> list[Fill]:
    return _validate(_FILLS, request_type, body)


def parse_portfolio(body: Any) -> Portfolio:
    if not isinstance(body, list):
        raise MalformedResponse("portfolio", body, "expected a list of [period, object] pairs")
    try:
        return Portfolio(periods=body)
    except ValidationError as exc:
        raise MalformedResponse("portfolio", body, _describe(exc)) from None


def parse_all_mids(body: Any) -> AllMids:
    return _validate(_MIDS, "allMids", body)


# --- trades (WebSocket) ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Trade:
    """One trade of the public `trades` stream. `side` is the taker's side: "B" (bought) or "A" (sold)."""

    coin: str
    side: Literal["B", "A"]
    px: Decimal
    sz: Decimal
    time: int  # ms
    hash: str
    tid: int  # unique only together with coin and time
    buyer: str  # canonical lowercase address
    seller: str

    @property
    def taker(self) -> str:
        return self.buyer if self.side == "B" else self.seller

    @property
    def maker(self) -> str:
        return self.seller if self.side == "B" else self.buyer

    @property
    def notional(self) -> Decimal:
        return self.px * self.sz


def _positive_decimal(raw: dict[str, Any], key: str) -> Decimal:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidTrade(raw, f"{key} must be a decimal string")
    try:
        number = Decimal(value if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise InvalidTrade(raw, f"{key} is not a number: {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise InvalidTrade(raw, f"{key} must be a positive finite number, got {value!r}")
    return number


def _integer(raw: dict[str, Any], key: str) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidTrade(raw, f"{key} must be a non-negative integer, got {value!r}")
    return value


def parse_trade(raw: Any) -> Trade:
    """One `WsTrade` (`{coin, side, px, sz, time, hash, tid, users: [buyer, seller]}`) -> :class:`Trade`."""
    if not isinstance(raw, dict):
        raise InvalidTrade(raw, "a trade must be an object")
    try:
        coin, side, users, tx_hash = raw["coin"], raw["side"], raw["users"], raw["hash"]
        if not isinstance(coin, str) or not coin or len(coin) > 64:
            raise InvalidTrade(raw, f"bad coin {coin!r}")
        if side not in ("B", "A"):
            raise InvalidTrade(raw, f"side must be 'B' or 'A', got {side!r}")
        if not isinstance(users, list | tuple) or len(users) != 2:
            raise InvalidTrade(raw, "users must be [buyer, seller]")
        if not isinstance(tx_hash, str):
            raise InvalidTrade(raw, "hash must be a string")
        buyer, seller = users
        if not (isinstance(buyer, str) and ADDRESS_PATTERN.match(buyer)   # the wire's canonical form: fast path
                and isinstance(seller, str) and ADDRESS_PATTERN.match(seller)):
            try:
                buyer, seller = normalise_address(buyer), normalise_address(seller)
            except InvalidAddress as exc:
                raise InvalidTrade(raw, str(exc)) from None
        return Trade(coin=coin, side=side, px=_positive_decimal(raw, "px"), sz=_positive_decimal(raw, "sz"),
                     time=_integer(raw, "time"), hash=tx_hash, tid=_integer(raw, "tid"), buyer=buyer, seller=seller)
    except KeyError as exc:
        raise InvalidTrade(raw, f"missing field {exc.args[0]!r}") from None


def parse_recent_trades(body: Any) -> tuple[list[Trade], list[InvalidTrade]]:
    """A `recentTrades` answer (WsTrades, newest first) -> (valid trades in the same order, errors of the bad
    ones). A body that is not a list raises :class:`MalformedResponse`."""
    if not isinstance(body, list):
        raise MalformedResponse("recentTrades", body, "expected a list of trades")
    return parse_trades(body)


def parse_trades(items: Any) -> tuple[list[Trade], list[InvalidTrade]]:
    """The `data` list of a `trades` frame -> (good trades, errors of the bad ones). Never raises per item."""
    if not isinstance(items, list):
        return [], [InvalidTrade(items, "trades data must be a list")]
    trades: list[Trade] = []
    errors: list[InvalidTrade] = []
    for item in items:
        try:
            trades.append(parse_trade(item))
        except InvalidTrade as exc:
            errors.append(exc)
    return trades, errors
