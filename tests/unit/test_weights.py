"""The weight table matches the exchange's documented limits."""

from __future__ import annotations

import pytest

from hyperfollow.core.weights import EXCHANGE_LIMIT_PER_MINUTE, exchange_action_weight, extra_weight, info_weight


@pytest.mark.parametrize(("request_type", "weight"), [
    ("clearinghouseState", 2), ("allMids", 2), ("l2Book", 2), ("meta", 20), ("userFills", 20),
    ("userFillsByTime", 20), ("portfolio", 20), ("userRole", 60), ("somethingNew", 20)])
def test_info_weights(request_type: str, weight: int) -> None:
    assert info_weight(request_type) == weight


def test_item_pricing() -> None:
    assert extra_weight("userFills", 19) == 0
    assert extra_weight("userFills", 2000) == 100
    assert extra_weight("candleSnapshot", 120) == 2
    assert extra_weight("clearinghouseState", 500) == 0


def test_physical_ceiling_is_600_states_per_minute() -> None:
    assert EXCHANGE_LIMIT_PER_MINUTE // info_weight("clearinghouseState") == 600
    assert exchange_action_weight(1) == 1 and exchange_action_weight(80) == 3
