"""The hash space that shards divide: 16384 slots, each address in exactly one.

`slot(address)` is the first 8 bytes of SHA-256 of the lowercase address, big-endian, modulo 16384: stable
across processes, machines and languages, and stored in `traders.slot` so a shard selects its traders with
an indexed range query. A shard owns the half-open range `[start, end)`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from hyperfollow.core.addresses import normalise_address

__all__ = ["SLOT_COUNT", "SlotRange", "slot", "tile"]

SLOT_COUNT = 16384


@lru_cache(maxsize=1 << 18)
def slot(address: str) -> int:
    """The slot of an address (any letter case). Cached: discovery asks again for every trade."""
    digest = hashlib.sha256(normalise_address(address).encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % SLOT_COUNT


@dataclass(frozen=True, order=True)
class SlotRange:
    """A half-open range `[start, end)` of slots."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end <= SLOT_COUNT):
            raise ValueError(f"slot range must satisfy 0 <= start < end <= {SLOT_COUNT}, got {self.start}:{self.end}")

    @classmethod
    def parse(cls, text: str) -> SlotRange:
        """Parse `START:END` (as on the worker command line)."""
        start_text, sep, end_text = text.strip().partition(":")
        if not sep:
            raise ValueError(f"slot range must look like START:END, got {text!r}")
        try:
            return cls(int(start_text), int(end_text))
        except ValueError as exc:
            if "slot range" in str(exc):
                raise
            raise ValueError(f"slot range must look like START:END with integers, got {text!r}") from None

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.start <= value < self.end

    def __len__(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.start}:{self.end}"

    def overlaps(self, other: SlotRange) -> bool:
        return self.start < other.end and other.start < self.end


def tile(count: int) -> list[SlotRange]:
    """Split the whole slot space into `count` contiguous ranges of near-equal size."""
    if not 1 <= count <= SLOT_COUNT:
        raise ValueError(f"shard count must be between 1 and {SLOT_COUNT}, got {count}")
    bounds = [round(i * SLOT_COUNT / count) for i in range(count + 1)]
    return [SlotRange(bounds[i], bounds[i + 1]) for i in range(count)]
