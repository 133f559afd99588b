"""Small asyncio helpers shared by the services."""

from __future__ import annotations

import asyncio

__all__ = ["wait_any"]


async def wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Return once any of `events` is set, or after `timeout` seconds (never raises on the timeout)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
