"""Aggregating trades into a flush: both sides, earliest/latest times, fills per side, duplicates, bad addresses."""

from __future__ import annotations

from decimal import Decimal

from support import trade

from hyperfollow.discovery.batch import build_batch

A = "0x" + "a" * 40
B = "0x" + "b" * 40
C = "0x" + "C" * 40


def test_both_addresses_become_traders_with_earliest_and_latest_times() -> None:
    batch = build_batch([trade("BTC", "B", 100, 1, 2000, 1, A, B),
                         trade("ETH", "A", 10, 2, 1000, 2, B, C),
                         trade("BTC", "A", 101, 1, 3000, 3, A, C)], record_fills=False)
    assert batch.trades == 3 and batch.fills == []
    assert batch.activity == {A: (2000, 3000), B: (1000, 2000), C.lower(): (1000, 3000)}


def test_fills_carry_each_traders_side_and_taker_flag() -> None:
    batch = build_batch([trade("BTC", "A", "100.5", "0.1", 5, 9, A, B)], record_fills=True)
    buyer, seller = batch.fills
    assert (buyer.address, buyer.side, buyer.crossed) == (A, "B", False)  # the seller was the taker
    assert (seller.address, seller.side, seller.crossed) == (B, "A", True)
    assert buyer.px == Decimal("100.5") and buyer.tid == 9 and buyer.time == 5


def test_a_resent_trade_counts_once() -> None:
    resent = trade("BTC", "B", 1, 1, 7, 42, A, B)
    batch = build_batch([resent, resent, trade("ETH", "B", 1, 1, 7, 42, A, B)], record_fills=True)
    assert batch.trades == 2 and batch.duplicate_trades == 1 and len(batch.fills) == 4


def test_a_bad_address_is_counted_and_the_good_side_kept() -> None:
    batch = build_batch([trade("BTC", "B", 1, 1, 7, 1, "0xnothex", B)], record_fills=True)
    assert batch.invalid_addresses == 1
    assert list(batch.activity) == [B] and [f.address for f in batch.fills] == [B]
