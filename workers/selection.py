"""What the feeder enqueues next and when a running batch yields. Pure functions, no I/O.

Batches are RQ jobs whose id says what they hold and when the feeder made them: `a-<ms>-<hex>` holds traders
seen trading (active), `i-<ms>-<hex>` traders due by rotation (idle, `last_tracked_at` oldest first). The
rules keep the queue short, so a trader that starts trading waits behind little:

- at most one *active* batch per worker of the shard is queued; the rest of the active traders wait in
  the activity marks (oldest activity first), not in the queue, so the queue never outgrows what the
  workers, and through them the weight budget, can serve soon;
- active batches go to the *front* of the queue, unless the queued rotation batch has waited longer than
  `idle_max_wait` (then to the back: rotation is never starved for good);
- exactly one rotation batch is kept queued, so a worker that finishes always has work and the budget is
  used to the full;
- a running rotation batch yields (returns its remaining traders) when an active batch has waited at the
  front of the queue for `preempt_after`, after refreshing at least one trader (so rotation always moves).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACTIVE",
    "IDLE",
    "BatchId",
    "QueueView",
    "active_at_front",
    "active_room",
    "batch_job_id",
    "parse_batch_id",
    "pick_active",
    "should_yield",
    "split",
    "wants_idle_batch",
]

Kind = Literal["a", "i"]
ACTIVE: Kind = "a"
IDLE: Kind = "i"


@dataclass(frozen=True)
class BatchId:
    kind: Kind
    created_ms: int


def batch_job_id(kind: Kind, created_ms: int) -> str:
    """An RQ job id (letters, digits, `-`) carrying the batch's kind and creation time."""
    return f"{kind}-{created_ms}-{secrets.token_hex(6)}"


def parse_batch_id(job_id: str | bytes | None) -> BatchId | None:
    """The kind and creation time of a batch job id; None for any other job id."""
    if job_id is None:
        return None
    if isinstance(job_id, bytes):
        job_id = job_id.decode(errors="replace")
    parts = job_id.split("-")
    if len(parts) != 3 or parts[0] not in (ACTIVE, IDLE) or not parts[1].isdigit():
        return None
    return BatchId(kind=parts[0], created_ms=int(parts[1]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class QueueView:
    """The shard's queue as the feeder sees it: queued job ids (front first) and live workers."""

    queued: tuple[str, ...]
    workers: int

    def batches(self, kind: Kind) -> list[BatchId]:
        found = (parse_batch_id(job_id) for job_id in self.queued)
        return [batch for batch in found if batch is not None and batch.kind == kind]


def active_room(view: QueueView) -> int:
    """How many more active batches may be queued (one per worker, at least one)."""
    return max(0, max(1, view.workers) - len(view.batches(ACTIVE)))


def active_at_front(view: QueueView, now_ms: int, idle_max_wait_ms: int) -> bool:
    """Active batches overtake the queued rotation batch unless it has waited too long."""
    idle = view.batches(IDLE)
    return not idle or now_ms - min(batch.created_ms for batch in idle) < idle_max_wait_ms


def wants_idle_batch(view: QueueView) -> bool:
    """Keep exactly one rotation batch queued."""
    return not view.batches(IDLE)


def pick_active(marks: Iterable[tuple[str, float]], pending: set[str], in_shard: Callable[[str], bool],
                limit: int) -> list[str]:
    """Traders to refresh first: marked active, in the shard, not already in a batch; oldest activity first.

    `marks` are (address, earliest uncovered trade ms) from any number of buckets, in any order.
    """
    chosen: dict[str, float] = {}
    for address, score in marks:
        if address in pending or address in chosen or not in_shard(address):
            continue
        chosen[address] = score
    return [address for address, _ in sorted(chosen.items(), key=lambda item: (item[1], item[0]))[:max(0, limit)]]


def split(addresses: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive batches of at most `size` (order kept: the oldest activity goes first)."""
    if size <= 0:
        raise ValueError("batch size must be positive")
    return [list(addresses[i:i + size]) for i in range(0, len(addresses), size)]


def should_yield(current: BatchId | None, refreshed: int, front_job_id: str | bytes | None, now_ms: int,
                 preempt_after_ms: int) -> bool:
    """Whether a running batch should hand its remaining traders back for an active batch waiting in front."""
    if current is None or current.kind != IDLE or refreshed < 1:
        return False
    front = parse_batch_id(front_job_id)
    return front is not None and front.kind == ACTIVE and now_ms - front.created_ms >= preempt_after_ms
