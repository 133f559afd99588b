"""The activity marks as the tracking side uses them (discovery writes them; core/keys.py has the contract).

The feeder reads the earliest-uncovered-trade scores of the buckets overlapping its shard; a worker that
stored a state fetched at time T clears a trader's mark if no trade at or after T is known (`clear_mark.lua`,
atomic with discovery's updates), or advances its earliest time to T otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from hyperfollow.core.keys import ACTIVE_BUCKET_SLOTS, RedisKeys, active_bucket
from hyperfollow.core.slots import SlotRange, slot

__all__ = ["ClearedMark", "MarkClearer", "MarkReader"]

_CLEAR = (Path(__file__).parent / "clear_mark.lua").read_text()

#: Shared buckets are read this many times deeper, so the neighbour's marks do not hide ours.
SHARED_BUCKET_FACTOR = 8


@dataclass(frozen=True)
class ClearedMark:
    cleared: bool
    earliest_ms: int | None  # the earliest uncovered trade the mark had (None: no mark)


class MarkClearer:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.keys = keys
        self._script = client.register_script(_CLEAR)
        self._client = client

    def clear(self, address: str, observed_ms: int) -> ClearedMark:
        bucket = active_bucket(slot(address))
        cleared, earliest = self._script(keys=[self.keys.active(bucket), self.keys.active_latest(bucket)],
                                         args=[address, observed_ms])
        return ClearedMark(cleared=bool(cleared), earliest_ms=None if int(earliest) < 0 else int(earliest))

    def drop(self, addresses: list[str]) -> None:
        """Remove marks outright (traders we do not track: unknown or inactive)."""
        with self._client.pipeline(transaction=False) as pipe:
            for address in addresses:
                bucket = active_bucket(slot(address))
                pipe.zrem(self.keys.active(bucket), address)
                pipe.zrem(self.keys.active_latest(bucket), address)
            pipe.execute()


class MarkReader:
    """Reads the marks of one shard's buckets (one round trip per call, whatever the number of buckets)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, slots: SlotRange) -> None:
        self.slots = slots
        self._client = client
        buckets = keys.active_buckets_for(slots.start, slots.end)
        self._buckets = list(buckets)
        self._keys = [keys.active(bucket) for bucket in buckets]
        # buckets the shard shares with a neighbour: their oldest marks may all be the neighbour's
        self._shared = [not (bucket * ACTIVE_BUCKET_SLOTS >= slots.start
                             and (bucket + 1) * ACTIVE_BUCKET_SLOTS <= slots.end) for bucket in buckets]

    def in_shard(self, address: str) -> bool:
        return slot(address) in self.slots

    def oldest(self, wanted: int, pending: set[str]) -> Iterator[tuple[str, float]]:
        """Marks with the oldest activity, (address, earliest ms): from each bucket enough to find `wanted`
        traders besides the `pending` ones (claimed traders are the oldest marks, so they come first)."""
        claimed: dict[int, int] = {}
        for address in pending:
            bucket = active_bucket(slot(address))
            claimed[bucket] = claimed.get(bucket, 0) + 1
        with self._client.pipeline(transaction=False) as pipe:
            for bucket, key, shared in zip(self._buckets, self._keys, self._shared, strict=True):
                depth = max(1, wanted) * (SHARED_BUCKET_FACTOR if shared else 1) + claimed.get(bucket, 0)
                pipe.zrange(key, 0, depth - 1, withscores=True)
            replies = pipe.execute()
        for reply in replies:
            for member, score in reply:
                yield (member.decode() if isinstance(member, bytes) else member), float(score)

    def count(self) -> int:
        """Marks in the shard's buckets (edge buckets are shared with neighbours: an upper bound)."""
        with self._client.pipeline(transaction=False) as pipe:
            for key in self._keys:
                pipe.zcard(key)
            return sum(pipe.execute())
