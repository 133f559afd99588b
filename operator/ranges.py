"""Overlaps and gaps among the TrackingShards of a namespace (pure).

The rule that keeps the operator from ever double-tracking: **a shard whose range overlaps an older shard is
held** (its workers are scaled to zero) until the overlap is gone. "Older" is by creation time, then name, so
every reconcile of every shard reaches the same verdict, and deleting or fixing one shard never makes a
running shard stop. Gaps (slots no running shard covers) are reported to the shards that border them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hyperfollow.core.slots import SLOT_COUNT, SlotRange

__all__ = ["Peer", "RangeReport", "assess", "gaps"]


@dataclass(frozen=True, order=True)
class Peer:
    """A shard as seen for range checks. Ordered by age: (creation time, name)."""

    created: str  # RFC 3339 as the API gives it; these sort chronologically
    name: str
    slots: SlotRange


@dataclass(frozen=True)
class RangeReport:
    """What one shard needs to know about its neighbours."""

    overlaps: tuple[Peer, ...] = ()
    """Other shards whose range overlaps this one."""
    held_by: tuple[Peer, ...] = ()
    """The older ones among them: while any exist, this shard is held at zero workers."""
    gaps: tuple[SlotRange, ...] = ()
    """Slots covered by no running shard, touching or inside this shard's range."""

    @property
    def held(self) -> bool:
        return bool(self.held_by)


def gaps(ranges: Iterable[SlotRange]) -> list[SlotRange]:
    """The parts of [0, SLOT_COUNT) that none of `ranges` covers, in order."""
    result = []
    cursor = 0
    for current in sorted(ranges):
        if current.start > cursor:
            result.append(SlotRange(cursor, current.start))
        cursor = max(cursor, current.end)
    if cursor < SLOT_COUNT:
        result.append(SlotRange(cursor, SLOT_COUNT))
    return result


def _held(peer: Peer, peers: Sequence[Peer]) -> bool:
    return any(other < peer and other.slots.overlaps(peer.slots) for other in peers if other.name != peer.name)


def assess(me: Peer, peers: Sequence[Peer]) -> RangeReport:
    """Report on `me` among `peers` (the namespace's shards; `me` may or may not be among them)."""
    others = [peer for peer in peers if peer.name != me.name]
    everyone = [*others, me]
    overlaps = tuple(sorted(peer for peer in others if peer.slots.overlaps(me.slots)))
    held_by = tuple(peer for peer in overlaps if peer < me)
    running = [peer.slots for peer in everyone if not _held(peer, everyone)]
    touching = tuple(gap for gap in gaps(running) if gap.start <= me.slots.end and me.slots.start <= gap.end)
    return RangeReport(overlaps=overlaps, held_by=held_by, gaps=touching)
