"""The simulator's knobs: one validated model shared by `SimServer`, `hyperfollow sim` and `POST /_sim/chaos`.

Market knobs fix the trade sequence (with the seed); the rest shape the server (rate limit, WebSocket limits)
or inject faults (chaos). Chaos uses its own random stream, so switching faults on never changes which trades
the market makes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CHAOS_FIELDS", "MALFORMED_KINDS", "SimConfig"]

#: Kinds of malformed WebSocket frames chaos can inject (each an extra frame; real trades are never replaced).
MALFORMED_KINDS = ("invalid_json", "wrong_shape", "bad_address", "text")


class SimConfig(BaseModel):
    """Everything that defines a simulated exchange. Defaults model a calm exchange with real limits."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- the market (deterministic for a seed) ------------------------------------------------------------
    seed: int = Field(1, description="fixes the population and the sequence of trades")
    traders: int = Field(2000, ge=2, le=1_000_000, description="population size (the backstop liquidator is extra)")
    coins: int = Field(20, ge=1, le=500, description="listed perps: real names first (BTC, ETH, SOL, …), then SIM…")
    trades_per_second: float = Field(20.0, ge=0, description="base trade rate (fills on the tape); 0 = manual steps")
    speed: float = Field(1.0, gt=0, description="multiplies the base rate")
    zipf_exponent: float = Field(1.0, ge=0, le=4, description="activity of the k-th most active trader ∝ 1/k^s")
    market_maker_fraction: float = Field(0.02, ge=0, le=0.5,
                                         description="share of traders that are market makers (large, low leverage)")
    max_fills_per_order: int = Field(3, ge=1, le=20, description="a taker order fills against up to this many makers")
    fill_history: int = Field(2000, ge=10, le=1_000_000,
                              description="fills kept per user (userFills answers 2000; the exchange keeps 10k)")
    truth_limit: int = Field(1_000_000, ge=0, description="truth records kept in memory (oldest go); 0 = all")
    portfolio_interval_s: float = Field(10.0, gt=0, description="min. spacing of a user's account-value history points")

    # --- the server ---------------------------------------------------------------------------------------
    weight_limit: int = Field(1200, ge=0, description="REST weight per client IP per window; 0 = no limit")
    weight_window_s: float = Field(60.0, gt=0, description="sliding window of the weight limit")
    trust_forwarded_for: bool = Field(False, description="take the client IP from X-Forwarded-For (tests of many IPs)")
    ws_idle_timeout_s: float = Field(60.0, gt=0, description="close a connection nothing was sent on for this long")
    ws_max_connections_per_ip: int = Field(10, ge=0, description="simultaneous WebSocket connections per IP; 0 = any")
    ws_max_new_connections_per_minute: int = Field(30, ge=0, description="new connections per IP per minute; 0 = any")
    ws_max_subscriptions_per_ip: int = Field(1000, ge=0, description="subscriptions per IP; 0 = any")
    ws_send_queue: int = Field(10_000, ge=1, description="messages queued for a slow client before it is dropped")
    ws_per_message_deflate: bool = Field(True, description="offer permessage-deflate compression, as the exchange")
    tick_s: float = Field(0.05, gt=0, le=5, description="how often trades are generated and broadcast")
    max_batch: int = Field(2000, ge=1, description="trades per WebSocket message at most")
    recent_trades: int = Field(100, ge=0, le=100_000,
                               description="trades a `recentTrades` answer holds per coin (the exchange does not "
                                           "document its number; answers of 5-20 KB have been reported)")
    max_backlog_s: float = Field(1.0, gt=0, description="generation that falls behind by more is skipped, not rushed")
    start_paused: bool = Field(False, description="make no trades until resumed (POST /_sim/resume)")
    pregenerate_trades: int = Field(0, ge=0, le=50_000_000,
                                    description="firehose: make this many trades before serving, then emit them "
                                                "at the rate (far faster than live generation)")
    truth_file: Path | None = Field(None, description="append every truth record here as a JSON line")

    # --- chaos (may be changed at run time) ---------------------------------------------------------------
    disconnect_interval_s: float = Field(0.0, ge=0, description="close each WS connection after ~this long; 0 = off")
    disconnect_probability: float = Field(0.0, ge=0, le=1, description="chance per trades message to drop the link")
    malformed_probability: float = Field(0.0, ge=0, le=1, description="chance per trades message of an extra bad frame")
    malformed_kinds: tuple[str, ...] = Field(MALFORMED_KINDS, description="which bad frames to inject")
    error_probability: float = Field(0.0, ge=0, le=1, description="chance a REST request answers 5xx")
    slow_probability: float = Field(0.0, ge=0, le=1, description="chance a REST request is answered late")
    slow_delay_s: float = Field(2.0, ge=0, le=600, description="how late a slow answer is")
    chaos_seed: int | None = Field(None, description="seed of the fault stream (default: derived from seed)")

    def chaos(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in CHAOS_FIELDS}

    @property
    def rate(self) -> float:
        """Trades per second actually generated."""
        return self.trades_per_second * self.speed


CHAOS_FIELDS = ("disconnect_interval_s", "disconnect_probability", "malformed_probability", "malformed_kinds",
                "error_probability", "slow_probability", "slow_delay_s")
