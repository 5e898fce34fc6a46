"""The installed `plant` command, run as a user runs it: a real process, real files."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def plant_command() -> list[str]:
    exe = shutil.which("plant", path=str(Path(sys.executable).parent))
    assert exe, "the `plant` entry point is installed with the package"
    return [exe]


def test_simulate_runs_and_writes_history(tmp_path: Path) -> None:
    out = tmp_path / "h.csv"
    done = subprocess.run(
        [
            *plant_command(),
            "simulate",
            "--hours",
            "0.5",
            "--seed",
            "9",
            "--fault",
            "refill_disturbance@10m:0.3:5m",
            "--csv",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "refill_disturbance@api_feeder" in done.stdout
    with out.open() as handle:
        assert sum(1 for _ in csv.reader(handle)) == 1 + 1800


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*plant_command(), "simulate", "--fault", "bridging@1h:2:1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: fault bridging: bridging magnitude 2 is outside")
    assert "Traceback" not in done.stderr


def test_fault_catalogue_is_listed() -> None:
    done = subprocess.run(
        [*plant_command(), "faults"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    for kind in ("refill_disturbance", "bridging", "diverter_stuck"):
        assert kind in done.stdout
