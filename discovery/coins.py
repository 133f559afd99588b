"""Which coins to watch: every listed perp (from `meta`), or POPULAR_COINS; what to (un)subscribe. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["SubscriptionPlan", "plan_subscriptions", "wanted_coins"]


def wanted_coins(listed: Iterable[tuple[str, bool]], popular: Iterable[str]) -> list[str]:
    """Coins to watch, given (name, is_delisted) pairs from meta and the POPULAR_COINS setting.

    With POPULAR_COINS set, those that are listed (a configured coin that is not listed is skipped: the
    exchange would reject the subscription); otherwise every listed, not delisted perp.
    """
    live = [name for name, delisted in listed if not delisted]
    chosen = set(popular)
    return sorted(c for c in live if c in chosen) if chosen else sorted(set(live))


@dataclass(frozen=True)
class SubscriptionPlan:
    subscribe: list[str]
    unsubscribe: list[str]


def plan_subscriptions(current: Iterable[str], wanted: Iterable[str]) -> SubscriptionPlan:
    have, want = set(current), set(wanted)
    return SubscriptionPlan(subscribe=sorted(want - have), unsubscribe=sorted(have - want))
