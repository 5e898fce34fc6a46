"""The loss accounting (testkit/loss.py): lost, extra and duplicated samples per tag."""

from __future__ import annotations

from testkit.loss import count, tally


def test_every_published_sample_stored_once_is_nothing_lost() -> None:
    result = count({"a.x": [1, 2, 3], "b.y": [5]}, {"a.x": [3, 1, 2], "b.y": [5]})
    assert (result.expected, result.stored, result.lost, result.extra, result.duplicates) == (
        4, 4, 0, 0, 0,
    )  # fmt: skip


def test_lost_extra_and_duplicated_points_are_counted_apart() -> None:
    result = count({"a.x": [1, 2, 3], "b.y": [5]}, {"a.x": [1, 1, 4], "c.z": [9]})
    assert (result.expected, result.stored, result.lost, result.extra, result.duplicates) == (
        4, 3, 3, 2, 1,
    )  # fmt: skip
    assert result.missing_examples == [("a.x", 2), ("a.x", 3), ("b.y", 5)]


def test_a_window_counts_each_tag_from_its_own_start_up_to_the_end() -> None:
    truth = {"a.x": [1, 2, 3, 4], "b.y": [1, 2, 3, 4], "c.z": [1]}
    stored = {"a.x": [2, 3], "b.y": [3, 4, 4]}
    result = tally(truth, stored, {"a.x": 2, "b.y": 3}, end_ns=3)
    # a.x over [2, 3], b.y over [3, 3]; c.z has no start: not counted.
    assert (result.expected, result.lost, result.extra, result.duplicates) == (3, 0, 0, 0)
