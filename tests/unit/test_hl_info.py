"""The /info client's pure parts: back-off and Retry-After parsing, settings wiring."""

from __future__ import annotations

import email.utils

import pytest

from hyperfollow.core.budget import BudgetConfig
from hyperfollow.core.hl_info import InfoClient, backoff_delay, parse_retry_after
from hyperfollow.core.hl_settings import ExchangeSettings
from hyperfollow.core.settings import ConfigError, load_settings


def test_backoff_is_full_jitter_and_capped() -> None:
    assert backoff_delay(0, 0.25, 8.0, rng=lambda: 1.0) == 0.25
    assert backoff_delay(3, 0.25, 8.0, rng=lambda: 1.0) == 2.0
    assert backoff_delay(10, 0.25, 8.0, rng=lambda: 1.0) == 8.0
    assert backoff_delay(10, 0.25, 8.0, rng=lambda: 0.0) == 0.0
    assert all(0 <= backoff_delay(4, 0.25, 8.0) <= 4.0 for _ in range(100))


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    for junk in (None, "", "soon", "Mon, 99 Foo"):
        assert parse_retry_after(junk) is None


async def test_settings_reach_the_client_and_the_budget() -> None:
    settings = load_settings(ExchangeSettings, exchange_timeout=3, exchange_attempts=2, budget_max_wait=5,
                             budget_penalty_base=1, budget_penalty_cap=9, hyperliquid_api_url="http://sim:1/info")
    config = BudgetConfig.from_settings(settings)
    assert (config.max_wait, config.penalty_base, config.penalty_cap) == (5, 1, 9)
    client = InfoClient.from_settings(settings)
    try:
        assert client.url == "http://sim:1/info" and client.attempts == 2
    finally:
        await client.aclose()
    with pytest.raises(ConfigError, match="HYPERFOLLOW_WS_PING_INTERVAL"):
        load_settings(ExchangeSettings, ws_ping_interval=75)  # must stay inside the server's 60 s idle close
