"""The feeder's choices and a batch's yield rule (workers/selection.py), and liquidation candidates. Pure."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperfollow.core.events import EventType
from hyperfollow.core.hl_models import parse_fills
from hyperfollow.workers.diff import Position, diff_positions
from hyperfollow.workers.liquidation import (
    MarkCache,
    coins_needing_marks,
    liquidates,
    liquidation_candidates,
    near_liquidation,
)
from hyperfollow.workers.selection import (
    QueueView,
    active_at_front,
    active_room,
    batch_job_id,
    parse_batch_id,
    pick_active,
    should_yield,
    split,
    wants_idle_batch,
)

NOW = 1_700_000_000_000


def test_batch_ids_round_trip_and_are_valid_rq_ids() -> None:
    job_id = batch_job_id("a", NOW)
    parsed = parse_batch_id(job_id)
    assert parsed is not None and parsed.kind == "a" and parsed.created_ms == NOW
    assert parse_batch_id(job_id.encode()) == parsed
    assert batch_job_id("i", NOW) != batch_job_id("i", NOW)
    for other in ("leaderboard", "x-1-2", "a-abc-1", "a-1", None):
        assert parse_batch_id(other) is None


def view(*kinds_and_ages: tuple[str, int], workers: int = 2) -> QueueView:
    return QueueView(queued=tuple(batch_job_id(kind, NOW - age) for kind, age in kinds_and_ages), workers=workers)


def test_the_queue_holds_one_active_batch_per_worker_and_one_rotation_batch() -> None:
    assert active_room(view(workers=3)) == 3
    assert active_room(view(("a", 0), ("i", 0), workers=3)) == 2
    assert active_room(view(("a", 0), ("a", 0), workers=2)) == 0
    assert active_room(view(workers=0)) == 1  # no worker registered yet: still one batch ready
    assert wants_idle_batch(view(("a", 0)))
    assert not wants_idle_batch(view(("a", 0), ("i", 0)))


def test_active_batches_overtake_rotation_unless_it_waited_too_long() -> None:
    assert active_at_front(view(), NOW, 30_000)
    assert active_at_front(view(("i", 10_000)), NOW, 30_000)
    assert not active_at_front(view(("i", 31_000)), NOW, 30_000)


@given(st.lists(st.tuples(st.sampled_from([f"0x{i:040x}" for i in range(30)]), st.integers(0, 10_000)),
                max_size=60),
       st.sets(st.sampled_from([f"0x{i:040x}" for i in range(30)])), st.integers(0, 40))
def test_pick_active_takes_the_oldest_unclaimed_traders_of_the_shard(marks: list[tuple[str, int]], pending: set[str],
                                                                     limit: int) -> None:
    def in_shard(address: str) -> bool:
        return int(address, 16) % 3 != 0

    chosen = pick_active(marks, pending, in_shard, limit)
    assert len(chosen) == len(set(chosen)) <= limit
    assert not set(chosen) & pending and all(in_shard(a) for a in chosen)
    first_score = {}
    for address, score in marks:
        first_score.setdefault(address, score)
    eligible = sorted((first_score[a], a) for a in first_score if a not in pending and in_shard(a))
    assert chosen == [a for _, a in eligible[:limit]]


def test_split_keeps_order() -> None:
    assert split(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert split([], 3) == []
    with pytest.raises(ValueError):
        split(["a"], 0)


def test_only_a_rotation_batch_that_made_progress_yields_to_a_waiting_active_batch() -> None:
    idle, active = parse_batch_id(batch_job_id("i", NOW)), parse_batch_id(batch_job_id("a", NOW))
    waiting = batch_job_id("a", NOW - 500)
    assert should_yield(idle, 1, waiting, NOW, 250)
    assert not should_yield(idle, 0, waiting, NOW, 250)  # refresh at least one trader first
    assert not should_yield(idle, 3, waiting, NOW, 1_000)  # not waiting long enough yet
    assert not should_yield(active, 3, waiting, NOW, 250)  # active batches never yield
    assert not should_yield(idle, 3, batch_job_id("i", NOW - 9_000), NOW, 250)
    assert not should_yield(idle, 3, None, NOW, 250)


def pos(coin: str, size: str, liquidation: str | None, value: str | None = None) -> Position:
    raw = {"coin": coin, "szi": size, "entryPx": "100", "liquidationPx": liquidation}
    if value is not None:
        raw["positionValue"] = value
    return Position(coin, Decimal(size), Decimal(100), raw)


@pytest.mark.parametrize(("size", "liquidation", "mark", "expected"), [
    ("2", "90", "89", True),      # long: the mark fell through the liquidation price
    ("2", "90", "90.5", True),    # ... or is within 1 %
    ("2", "90", "95", False),
    ("-2", "110", "111", True),   # short: the mark rose through it
    ("-2", "110", "105", False),
    ("2", None, "50", False),     # no liquidation price (e.g. fully collateralised)
    ("2", "90", None, False),     # no mark known
])
def test_near_liquidation(size: str, liquidation: str | None, mark: str | None, expected: bool) -> None:
    assert near_liquidation(pos("BTC", size, liquidation), Decimal(mark) if mark else None, 0.01) is expected


def test_candidates_are_reductions_near_the_liquidation_price_with_a_known_mark() -> None:
    marks = MarkCache(max_age_ms=10_000)
    marks.update([pos("BTC", "1", None, value="89"), pos("ETH", "1", None, value="200")], NOW)
    previous = {"BTC": pos("BTC", "2", "90"), "ETH": pos("ETH", "2", "190"), "SOL": pos("SOL", "3", "90")}
    current = {"SOL": pos("SOL", "1", "90", value="88")}  # reduced; its own mark says it is past the price
    changes = diff_positions(previous, current)
    assert [c.event_type for c in changes] == [EventType.CLOSED, EventType.CLOSED, EventType.DECREASED]
    assert liquidation_candidates(changes, marks, NOW, 0.01) == ["BTC", "SOL"]
    assert liquidation_candidates(changes, marks, NOW + 20_000, 0.01) == ["SOL"]  # BTC's mark is too old now
    assert liquidation_candidates(diff_positions({}, previous), marks, NOW, 0.01) == []  # opens never are


def test_a_close_is_judged_only_by_a_recent_mark_and_names_the_coins_that_lack_one() -> None:
    marks = MarkCache(max_age_ms=60_000)
    marks.update([pos("BTC", "1", None, value="89")], NOW - 5_000)  # before the crash, say
    previous = {"BTC": pos("BTC", "2", "90"), "ETH": pos("ETH", "2", "190"), "DOGE": pos("DOGE", "2", None)}
    changes = diff_positions(previous, {})
    # the 5 s old mark serves the cache's default, not a 1 s limit; DOGE had no liquidation price at all
    assert liquidation_candidates(changes, marks, NOW, 0.01) == ["BTC"]
    assert liquidation_candidates(changes, marks, NOW, 0.01, max_age_ms=1_000) == []
    assert coins_needing_marks(changes, marks, NOW, 1_000) == ["BTC", "ETH"]
    assert coins_needing_marks(changes, marks, NOW, 10_000) == ["ETH"]
    marks.update_mids({"BTC": Decimal("89.5"), "ETH": Decimal("250"), "XRP": Decimal(0)}, NOW)
    assert coins_needing_marks(changes, marks, NOW, 1_000) == []
    assert liquidation_candidates(changes, marks, NOW, 0.01, max_age_ms=1_000) == ["BTC"]  # ETH is far above
    assert marks.get("XRP", NOW) is None  # a zero mid is no mark
    marks.update_mids({"BTC": Decimal(1)}, NOW - 1)  # an older answer never replaces a newer mark
    assert marks.get("BTC", NOW) == Decimal("89.5")


def fill(liquidation: dict | None) -> dict:
    body = {"coin": "BTC", "px": "89", "sz": "2", "side": "A", "time": NOW, "startPosition": "2", "dir": "Close Long",
            "closedPnl": "-22", "hash": "0x" + "0" * 64, "oid": 1, "crossed": True, "fee": "0.08", "tid": 7,
            "feeToken": "USDC"}
    if liquidation is not None:
        body["liquidation"] = liquidation
    return body


def test_a_fill_liquidates_the_trader_it_names_and_no_one_else() -> None:
    me, other = "0x" + "ab" * 20, "0x" + "cd" * 20
    mine, theirs, plain, unnamed = parse_fills([
        fill({"liquidatedUser": me.upper().replace("0X", "0x"), "markPx": "89", "method": "market"}),
        fill({"liquidatedUser": other, "markPx": "89", "method": "backstop"}),
        fill(None),
        fill({"markPx": "89", "method": "market"}),
    ], "userFillsByTime")
    assert liquidates(mine, me) and liquidates(unnamed, me)
    assert not liquidates(theirs, me) and not liquidates(plain, me)
