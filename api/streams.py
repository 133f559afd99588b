"""Redis stream ids: parsing and ordering (pure), for resuming a WebSocket feed without gaps or duplicates.

A stream id is `<milliseconds>-<sequence>`; Redis orders entries by the pair. A client resumes with
`?since=<id>` (the last id it received; `0` = from the start of what is retained).
"""

from __future__ import annotations

import re

__all__ = ["StreamKey", "format_stream_id", "is_after", "parse_stream_id"]

#: An id as Redis orders it: (milliseconds, sequence).
StreamKey = tuple[int, int]

_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_MAX = 2**64 - 1


def parse_stream_id(text: str | bytes) -> StreamKey:
    """`"1700000000000-3"` -> `(1700000000000, 3)`; a bare `"1700000000000"` means sequence 0.

    Raises ValueError with a message fit for a client when `text` is not a stream id.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    match = _ID.match(text.strip())
    if not match:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"not a stream id (expected <milliseconds>-<sequence>, e.g. 1700000000000-0): {shown!r}")
    millis, seq = int(match.group(1)), int(match.group(2) or 0)
    if millis > _MAX or seq > _MAX:
        raise ValueError("stream id out of range (each part must fit in 64 bits)")
    return millis, seq


def format_stream_id(key: StreamKey) -> str:
    return f"{key[0]}-{key[1]}"


def is_after(key: StreamKey | None, floor: StreamKey | None) -> bool:
    """True when a message with id `key` must still be delivered to a client that has everything up to `floor`.

    A message without an id (a producer that does not use the stream) cannot be deduplicated: it is delivered.
    """
    return key is None or floor is None or key > floor
