"""A gap is only when every link was down at the same time."""

from __future__ import annotations

import pytest

from hyperfollow.discovery.gaps import Gap, GapTracker


def test_staggered_drops_are_not_gaps() -> None:
    tracker = GapTracker(links=2)
    assert tracker.link_recovered(0, 10.0, 10.5) is None
    assert tracker.link_recovered(1, 11.0, 11.2) is None


def test_overlapping_drops_are_a_gap_of_their_overlap() -> None:
    tracker = GapTracker(links=2)
    assert tracker.link_recovered(0, 10.0, 10.5) is None  # link 1 not known to be down yet
    assert tracker.link_recovered(1, 10.25, 11.0) == Gap(start=10.25, seconds=pytest.approx(0.25))


def test_a_single_link_gap_is_its_whole_downtime() -> None:
    assert GapTracker(links=1).link_recovered(0, 3.0, 3.5) == Gap(start=3.0, seconds=pytest.approx(0.5))


def test_three_links_need_all_three_down() -> None:
    tracker = GapTracker(links=3)
    tracker.link_recovered(0, 0.0, 1.0)
    assert tracker.link_recovered(1, 0.5, 2.0) is None
    tracker.link_recovered(2, 0.75, 0.9)
    assert tracker.link_recovered(1, 0.8, 0.85) == Gap(start=0.8, seconds=pytest.approx(0.05))


def test_a_gap_in_two_pieces_starts_at_the_first() -> None:
    tracker = GapTracker(links=2)
    tracker.link_recovered(0, 1.0, 2.0)
    tracker.link_recovered(0, 3.0, 4.0)
    assert tracker.link_recovered(1, 1.5, 3.5) == Gap(start=1.5, seconds=pytest.approx(1.0))
