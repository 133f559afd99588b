"""Helpers shared by tests (importable as `support` thanks to `pythonpath = ["tests"]`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["free_port", "wait_for"]

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, step: float = 0.05, what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(step)


def trade(coin: str = "BTC", side: str = "B", px: str | int = 100, sz: str | int = 1, time: int = 1_000,
          tid: int = 1, buyer: str = "0x" + "a" * 40, seller: str = "0x" + "b" * 40):  # type: ignore[no-untyped-def]
    """A trade of the public stream as the WebSocket client parses it (core/hl_models.Trade)."""
    from decimal import Decimal

    from hyperfollow.core.hl_models import Trade

    return Trade(coin=coin, side=side, px=Decimal(px), sz=Decimal(sz), time=time, hash="0x" + "0" * 64,  # type: ignore[arg-type]
                 tid=tid, buyer=buyer, seller=seller)
