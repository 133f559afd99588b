"""When a recentTrades answer proves that no trade since a gap's start is missing."""

from __future__ import annotations

from hyperfollow.discovery.backfill import answer_covers


def test_an_answer_reaching_back_to_the_gap_covers_it() -> None:
    assert answer_covers([500, 400, 300], since_ms=300, largest_answer=3)
    assert answer_covers([500, 400, 299], since_ms=300, largest_answer=3)


def test_a_full_answer_that_starts_after_the_gap_may_have_lost_trades() -> None:
    assert not answer_covers([500, 400, 301], since_ms=300, largest_answer=3)


def test_a_shorter_answer_is_all_the_exchange_keeps_for_the_coin() -> None:
    assert answer_covers([500, 400], since_ms=300, largest_answer=3)


def test_no_trades_at_all_is_nothing_missed() -> None:
    assert answer_covers([], since_ms=300, largest_answer=0)
