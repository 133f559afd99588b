"""The e2e test's and benchmark's oracle (bench/bench_tracking.py: compare_with_truth) catches what it must."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hyperfollow.bench.bench_tracking import FLAT, StoredEvent, compare_with_truth, state_of

A = "0x" + "a" * 40


def record(seq: int, time: int, before: str, after: str, entry: str = "100") -> dict:
    def pos(size: str) -> dict:
        return {"szi": size, "entryPx": None if Decimal(size) == 0 else entry}
    return {"seq": seq, "trader": A, "coin": "BTC", "time": time, "before": pos(before), "after": pos(after)}


def event(id_: int, previous: str, current: str, at: int, since: int | None, created: int) -> StoredEvent:
    def st(size: str) -> tuple:
        return state_of({"szi": size, "entryPx": "100"})
    return StoredEvent(id=id_, trader=A, coin="BTC", event_type="x", previous=st(previous), current=st(current),
                       observed_ms=at, since_ms=since, created_ms=created)


TRUTH = [record(0, 1_000, "0", "1"), record(1, 1_000, "1", "3"), record(2, 5_000, "3", "2"),
         record(3, 9_000, "2", "0")]
GOOD = [event(1, "0", "3", 1_200, None, 1_500), event(2, "3", "2", 5_100, 1_200, 5_300),
        event(3, "2", "0", 9_050, 5_100, 9_400)]


def test_an_exact_record_passes_with_recall_and_latency() -> None:
    report = compare_with_truth(TRUTH, GOOD, {A})
    assert report.errors == []
    assert report.records == 4 and report.observable == 3 and report.seen_individually == 3
    assert report.recall == 1.0
    assert sorted(report.latencies) == [0.3, 0.4, 0.5, 0.5]


def test_a_duplicate_a_lost_change_a_wrong_state_and_a_wrong_final_state_are_caught() -> None:
    duplicate = [*GOOD[:2], replace(GOOD[1], id=9), GOOD[2]]
    assert any("starts from" in e for e in compare_with_truth(TRUTH, duplicate, {A}).errors)
    lost = [GOOD[0], GOOD[2]]
    assert any("starts from" in e for e in compare_with_truth(TRUTH, lost, {A}).errors)
    wrong = [GOOD[0], replace(GOOD[1], current=state_of({"szi": "7", "entryPx": "100"})), GOOD[2]]
    assert any("says" in e for e in compare_with_truth(TRUTH, wrong, {A}).errors)
    unfinished = GOOD[:2]
    assert any("final" in e for e in compare_with_truth(TRUTH, unfinished, {A}).errors)
    assert compare_with_truth(TRUTH, unfinished, {A}, final=False).errors == []


def test_net_changes_between_polls_are_valid_but_not_individual() -> None:
    merged = [event(1, "0", "2", 5_100, None, 5_200), event(2, "2", "0", 9_050, 5_100, 9_400)]
    report = compare_with_truth(TRUTH, merged, {A})
    assert report.errors == [] and report.seen_individually == 1 and report.covered == 4
    assert compare_with_truth(TRUTH, [], set()).untracked_records == 4
    assert state_of({"szi": "0.0", "entryPx": None}) == FLAT
