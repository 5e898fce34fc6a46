"""bench.closed_loop runs as documented and prints one JSON object last (its figures are the
benchmark's to report, not this test's to judge: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_closed_loop_benchmark_prints_its_figures_as_one_json_object() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.closed_loop", "--hours", "0.02", "--repeat", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["plant_hours"] == 0.02 and result["step_s"] == 1.0
    for run in ("closed_loop", "twin_only", "as_scored"):
        assert result[f"{run}_cpu_s"] > 0.0
    assert result["goal_x_real_time"] == 10_000 and isinstance(result["goal_met"], bool)
    assert result["settings_changed"] == {}
