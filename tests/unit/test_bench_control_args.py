"""bench.control's arguments: a bad seed list or count is refused with a reason, before any
campaign runs (a traceback, or a silent run of the standard campaign alone, it was)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from bench.control import campaign_count, seed_list


def test_seed_lists_take_seeds_and_inclusive_ranges() -> None:
    assert seed_list("6,15") == [6, 15]
    assert seed_list("6, 31..33,") == [6, 31, 32, 33]
    assert seed_list("-2..0") == [-2, -1, 0]


@pytest.mark.parametrize("text", ["1..x", "5..2", "six", ",", "", "1...3"])
def test_a_bad_seed_list_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        seed_list(text)


def test_a_campaign_count_is_a_whole_number_not_below_zero() -> None:
    assert campaign_count("0") == 0 and campaign_count("30") == 30
    for text in ("-3", "2.5", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            campaign_count(text)


def test_the_command_line_says_what_is_wrong_and_runs_nothing() -> None:
    for args in (["--only", "5..2"], ["--random", "-3"]):
        out = subprocess.run(
            [sys.executable, "-m", "bench.control", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 2, out
        assert "error: argument" in out.stderr and "Traceback" not in out.stderr
        assert out.stdout == ""
