"""Open positions from a stored `clearinghouseState` snapshot (pure).

The exchange sends numbers as strings and its shape has grown over the years, so parsing tolerates missing,
extra and malformed fields: a field that cannot be read becomes None, a position without a coin or a non-zero
size is skipped.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["open_positions"]


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def open_positions(state: Any) -> list[dict[str, Any]]:
    """The positions of a snapshot, largest absolute value first."""
    if not isinstance(state, dict):
        return []
    entries = state.get("assetPositions")
    positions = []
    for entry in entries if isinstance(entries, list) else []:
        position = entry.get("position") if isinstance(entry, dict) else None
        if not isinstance(position, dict):
            continue
        coin, size = position.get("coin"), _number(position.get("szi"))
        if not isinstance(coin, str) or not coin or not size:
            continue
        leverage = position.get("leverage")
        leverage = leverage if isinstance(leverage, dict) else {}
        positions.append({
            "coin": coin,
            "side": "LONG" if size > 0 else "SHORT",
            "size": size,
            "entry_price": _number(position.get("entryPx")),
            "position_value": _number(position.get("positionValue")),
            "unrealized_pnl": _number(position.get("unrealizedPnl")),
            "return_on_equity": _number(position.get("returnOnEquity")),
            "leverage": _number(leverage.get("value")),
            "leverage_type": leverage.get("type") if isinstance(leverage.get("type"), str) else None,
            "liquidation_price": _number(position.get("liquidationPx")),
            "margin_used": _number(position.get("marginUsed")),
        })
    positions.sort(key=lambda p: -abs(p["position_value"] or 0.0))
    return positions
