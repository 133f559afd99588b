"""The exchange's REST weights: the one table both the weight budget and the simulator use.

Per IP, all REST requests share 1200 weight per minute. `/info` requests weigh 2 (cheap reads), 60
(`userRole`) or 20 (everything else); some also cost 1 more per 20 items returned (per 60 for candles),
which is only known after the answer arrives. `/exchange` actions weigh 1 + floor(batch length / 40).
"""

from __future__ import annotations

__all__ = ["DEFAULT_INFO_WEIGHT", "EXCHANGE_LIMIT_PER_MINUTE", "exchange_action_weight", "extra_weight",
           "info_weight"]

EXCHANGE_LIMIT_PER_MINUTE = 1200

_CHEAP = frozenset({"l2Book", "allMids", "clearinghouseState", "orderStatus", "spotClearinghouseState",
                    "exchangeStatus"})
_HEAVY = {"userRole": 60}
DEFAULT_INFO_WEIGHT = 20

#: request type -> items per extra weight unit
_PER_ITEMS = {
    "recentTrades": 20, "historicalOrders": 20, "userFills": 20, "userFillsByTime": 20, "fundingHistory": 20,
    "userFunding": 20, "nonUserFundingUpdates": 20, "twapHistory": 20, "userTwapSliceFills": 20,
    "userTwapSliceFillsByTime": 20, "delegatorHistory": 20, "delegatorRewards": 20, "validatorStats": 20,
    "candleSnapshot": 60,
}


def info_weight(request_type: str) -> int:
    """Weight of an `/info` request, charged before it is sent."""
    if request_type in _CHEAP:
        return 2
    return _HEAVY.get(request_type, DEFAULT_INFO_WEIGHT)


def extra_weight(request_type: str, items: int) -> int:
    """Additional weight once the answer's item count is known (0 for types without item pricing)."""
    per = _PER_ITEMS.get(request_type)
    return items // per if per and items > 0 else 0


def exchange_action_weight(batch_length: int = 1) -> int:
    return 1 + max(0, batch_length) // 40
