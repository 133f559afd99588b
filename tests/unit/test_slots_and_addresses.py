"""Addresses are normalised one way; slots are stable across languages; ranges tile the space exactly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperfollow.core.addresses import InvalidAddress, is_address, normalise_address
from hyperfollow.core.keys import ACTIVE_BUCKET_SLOTS, RedisKeys, active_bucket
from hyperfollow.core.slots import SLOT_COUNT, SlotRange, slot, tile

addresses = st.text(alphabet="0123456789abcdefABCDEF", min_size=40, max_size=40).map(lambda h: "0x" + h)


def test_normalise_lowercases_and_strips() -> None:
    assert normalise_address("  0xABCDEFabcdef0123456789ABCDEFabcdef012345 ") == \
        "0xabcdefabcdef0123456789abcdefabcdef012345"


@pytest.mark.parametrize("bad", ["", "0x", "0x123", "ABCDEFabcdef0123456789ABCDEFabcdef01234567",
                                 "0xg000000000000000000000000000000000000000", "0x" + "0" * 41, None, 12, b"0x00"])
def test_invalid_addresses_are_rejected_with_a_clear_error(bad: object) -> None:
    assert not is_address(bad)
    with pytest.raises(InvalidAddress, match="address"):
        normalise_address(bad)


def test_slot_matches_independent_sha256_vectors() -> None:
    # computed with `printf %s ADDRESS | sha256sum`, first 16 hex digits, modulo 16384
    assert slot("0x0000000000000000000000000000000000000000") == 7842
    assert slot("0xdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef") == 12844
    assert slot("0xDEADBEEFDEADBEEFDEADBEEFDEADBEEFDEADBEEF") == 12844


@given(addresses)
def test_slot_is_in_range_and_case_insensitive(address: str) -> None:
    value = slot(address)
    assert 0 <= value < SLOT_COUNT
    assert slot(address.lower()) == slot(address.upper().replace("0X", "0x")) == value


@pytest.mark.parametrize("count", [1, 2, 3, 7, 64, 1000, SLOT_COUNT])
def test_tile_covers_every_slot_exactly_once(count: int) -> None:
    ranges = tile(count)
    assert len(ranges) == count
    assert ranges[0].start == 0 and ranges[-1].end == SLOT_COUNT
    assert all(a.end == b.start for a, b in itertools.pairwise(ranges))
    sizes = {len(r) for r in ranges}
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("text", "start", "end"), [("0:16384", 0, 16384), (" 10:20 ", 10, 20)])
def test_slot_range_parses(text: str, start: int, end: int) -> None:
    parsed = SlotRange.parse(text)
    assert (parsed.start, parsed.end) == (start, end)
    assert str(parsed) == f"{start}:{end}"


@pytest.mark.parametrize("text", ["5:5", "10:2", "-1:5", "0:16385", "abc", "1:x", "3"])
def test_bad_slot_ranges_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="slot range"):
        SlotRange.parse(text)


def test_overlap_and_membership() -> None:
    a, b, c = SlotRange(0, 100), SlotRange(99, 200), SlotRange(100, 200)
    assert a.overlaps(b) and not a.overlaps(c)
    assert 99 in a and 100 not in a


def test_active_buckets_cover_a_shards_slots() -> None:
    keys = RedisKeys("ns:")
    buckets = keys.active_buckets_for(300, 1000)
    assert list(buckets) == [1, 2, 3]
    for value in range(300, 1000):
        assert active_bucket(value) in buckets
    assert active_bucket(SLOT_COUNT - 1) == SLOT_COUNT // ACTIVE_BUCKET_SLOTS - 1
    assert keys.active(2) == "ns:active:2"
    assert RedisKeys().events_channel == "trade_events"
    assert RedisKeys().leaderboard_cache("win_rate", "desc") == "leaderboard_cache:win_rate:desc"


def test_purging_the_empty_namespace_is_refused() -> None:
    from hyperfollow.core.keys import purge_namespace

    with pytest.raises(ValueError, match="empty namespace"):
        purge_namespace(None, "")  # type: ignore[arg-type]  (refused before any I/O)
