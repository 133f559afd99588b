"""The WebSocket frames in the seed's shapes (`connection`, `trade_event`, `error`), built as text once.

A `trade_event` frame embeds the event's JSON as received, so one serialisation serves every client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["connection_frame", "error_frame", "now_iso", "pong_frame", "trade_event_frame"]

CONNECTED = "Connected to real-time updates feed"


def now_iso() -> str:
    """UTC now as the seed wrote it: `2025-08-05T10:30:00.000Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connection_frame(**extra: Any) -> str:
    return orjson.dumps({"type": "connection", "message": CONNECTED, "timestamp": now_iso(), **extra}).decode()


def error_frame(message: str, **extra: Any) -> str:
    return orjson.dumps({"type": "error", "message": message, "timestamp": now_iso(), **extra}).decode()


def pong_frame() -> str:
    return orjson.dumps({"type": "pong", "timestamp": now_iso()}).decode()


def trade_event_frame(data_json: str, timestamp: str | None = None) -> str:
    """`{"type": "trade_event", "data": <data_json>, "timestamp": …}` without re-serialising `data_json`."""
    return f'{{"type":"trade_event","data":{data_json},"timestamp":"{timestamp or now_iso()}"}}'
