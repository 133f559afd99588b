"""Settings of the exchange clients and the weight budget (a :class:`Settings` subclass to inherit from).

Services that talk to the exchange (workers, discovery, benchmarks) build their settings class on
:class:`ExchangeSettings` (`class WorkerSettings(ExchangeSettings): ...`) and pass it to
`BudgetConfig.from_settings` (core.budget), `InfoClient.from_settings` (core.hl_info) and
`WsClient.from_settings` (core.hl_ws).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field

from hyperfollow.core.settings import Settings

__all__ = ["ExchangeSettings"]


def _env(name: str) -> dict[str, object]:
    return {"validation_alias": AliasChoices(name)}


class ExchangeSettings(Settings):
    exchange_timeout: float = Field(10.0, gt=0, le=300, description="seconds per /info request",
                                    **_env("HYPERFOLLOW_EXCHANGE_TIMEOUT"))
    exchange_attempts: int = Field(5, ge=1, le=20, description="attempts per /info request (5xx, network, 429)",
                                   **_env("HYPERFOLLOW_EXCHANGE_ATTEMPTS"))
    budget_max_wait: float = Field(30.0, gt=0, le=600,
                                   description="seconds ahead a weight reservation may reach (longer queue: wait)",
                                   **_env("HYPERFOLLOW_BUDGET_MAX_WAIT"))
    budget_penalty_base: float = Field(2.0, gt=0, le=600, description="seconds the group backs off after a 429",
                                       **_env("HYPERFOLLOW_BUDGET_PENALTY_BASE"))
    budget_penalty_cap: float = Field(60.0, gt=0, le=3600, description="cap of the doubling 429 back-off",
                                      **_env("HYPERFOLLOW_BUDGET_PENALTY_CAP"))
    ws_ping_interval: float = Field(50.0, gt=0, lt=60,
                                    description="seconds between WebSocket pings (the server closes idle ones at 60)",
                                    **_env("HYPERFOLLOW_WS_PING_INTERVAL"))
