"""The leaderboard's golden vectors (tests/data/metrics_vectors.json), loaded for the unit and SQL tests.

A snapshot's `positions` becomes the exchange's clearinghouseState shape (`assetPositions[].position.coin`), so
the SQL (reading JSONB) and the reference (reading the same dict through `held_coins`) see identical input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hyperfollow.workers.leaderboard_reference import Fill, Snapshot, held_coins

__all__ = ["FIELDS", "VECTORS_FILE", "StoredSnapshot", "Vector", "expected_row", "load_vectors", "state_data"]

VECTORS_FILE = Path(__file__).parent / "data" / "metrics_vectors.json"

#: Every metric a vector must state for every window.
FIELDS = ("account_age_days", "total_volume_usd", "trade_count", "win_count", "win_rate", "realized_pnl_usd",
          "fees_usd", "max_profit_usd", "max_loss_usd", "roi", "max_drawdown", "avg_risk_ratio", "low_sample",
          "last_trade_at")
_INTS = {"account_age_days", "trade_count", "win_count"}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def state_data(positions: list[str] | None, account_value: str | None) -> dict[str, Any]:
    """A clearinghouseState-shaped document holding `positions`; None gives a state without a position list."""
    if positions is None:
        return {"error": "unparseable state"}
    return {
        "assetPositions": [{"type": "oneWay", "position": {"coin": coin, "szi": "1"}} for coin in positions],
        "marginSummary": {"accountValue": account_value or "0"},
    }


@dataclass(frozen=True)
class StoredSnapshot:
    timestamp: datetime
    account_value: Decimal | None
    total_notional: Decimal | None
    state_data: dict[str, Any]

    def as_reference(self) -> Snapshot:
        return Snapshot(self.timestamp, self.account_value, self.total_notional, held_coins(self.state_data))


@dataclass(frozen=True)
class Vector:
    name: str
    first_seen_at: datetime
    fills: list[Fill]
    snapshots: list[StoredSnapshot]
    expected: dict[str, dict[str, Any]]


def expected_row(raw: dict[str, Any]) -> dict[str, Any]:
    """JSON values -> the Python values a row holds (Decimal, int, bool, datetime or None)."""
    row: dict[str, Any] = {}
    for field in FIELDS:
        value = raw[field]
        if field in _INTS or isinstance(value, bool) or value is None:
            row[field] = value
        elif field == "last_trade_at":
            row[field] = _time(value)
        else:
            row[field] = Decimal(value)
    return row


def load_vectors() -> tuple[datetime, int, list[Vector]]:
    """(now, min_trades, vectors)."""
    data = json.loads(VECTORS_FILE.read_text())
    vectors = []
    for raw in data["vectors"]:
        fills = [Fill(f["coin"], f["side"], Decimal(f["px"]), Decimal(f["sz"]), _time(f["time"]), f["tid"],
                      f["crossed"]) for f in raw["fills"]]
        snapshots = [StoredSnapshot(_time(s["time"]),
                                    None if s["account_value"] is None else Decimal(s["account_value"]),
                                    None if s["total_notional"] is None else Decimal(s["total_notional"]),
                                    state_data(s["positions"], s["account_value"])) for s in raw["snapshots"]]
        expected = {window: expected_row(values) for window, values in raw["expected"].items()}
        vectors.append(Vector(raw["name"], _time(raw["first_seen_at"]), fills, snapshots, expected))
    return _time(data["now"]), int(data["min_trades"]), vectors
