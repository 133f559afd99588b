"""Discovery's own settings (HYPERFOLLOW_DISCOVERY_*), on top of the shared and the exchange client's."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from hyperfollow.core.hl_settings import ExchangeSettings

__all__ = ["DiscoverySettings"]


def _env(name: str) -> AliasChoices:
    return AliasChoices(f"HYPERFOLLOW_DISCOVERY_{name}")


class DiscoverySettings(ExchangeSettings):
    flush_interval_ms: int = Field(250, ge=10, le=60_000, validation_alias=_env("FLUSH_INTERVAL_MS"),
                                   description="flush at least this often while trades are pending")
    flush_max_trades: int = Field(5_000, ge=1, le=1_000_000, validation_alias=_env("FLUSH_MAX_TRADES"),
                                  description="flush as soon as this many trades are pending")
    max_buffered_trades: int = Field(500_000, ge=1_000, validation_alias=_env("MAX_BUFFERED_TRADES"),
                                     description="memory bound while PostgreSQL/Redis are down; beyond it the "
                                                 "oldest trades are dropped and counted")
    record_fills: bool = Field(True, validation_alias=_env("RECORD_FILLS"),
                               description="store traders' fills seen on the tape (leaderboard input)")
    meta_refresh_s: float = Field(300.0, ge=1, validation_alias=_env("META_REFRESH_S"),
                                  description="how often the perp universe is re-read for listings")
    known_cache_size: int = Field(1_000_000, ge=1_000, validation_alias=_env("KNOWN_CACHE_SIZE"),
                                  description="addresses remembered in-process to skip their insert")
    redundancy: int = Field(2, ge=1, le=3, validation_alias=_env("REDUNDANCY"),
                            description="independent WebSocket links receiving every coin's trades; a trade is "
                                        "lost only if every link is down at once (duplicates are dropped)")
    backfill: bool = Field(True, validation_alias=_env("BACKFILL"),
                           description="after every link was down at once, re-read the coins' recentTrades "
                                       "(about 21 weight per coin) to recover the trades missed")
    backfill_max_coins: int = Field(50, ge=0, le=10_000, validation_alias=_env("BACKFILL_MAX_COINS"),
                                    description="coins asked per backfill, busiest first; 0 = every coin")
    reconnect_base_s: float = Field(0.05, gt=0, le=10, validation_alias=_env("RECONNECT_BASE_S"),
                                    description="first reconnect delay (doubling with jitter, capped at 30 s)")
    last_seen_granularity_s: float = Field(10.0, ge=0, validation_alias=_env("LAST_SEEN_GRANULARITY_S"),
                                           description="rewrite last_seen_trading_at only when it moved this much")
