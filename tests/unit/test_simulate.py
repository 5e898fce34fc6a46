"""`plant simulate`: parsing, the run and its summary, the CSV history, and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apps.cli import app
from apps.simulate import SpecError, parse_duration, parse_fault, run
from twin import Plant


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "5d", "-3", "1h30"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(SpecError, match="not a duration"):
        parse_duration(text)


def test_fault_spec() -> None:
    spec = parse_fault("feeder_noise/excipient_feeder@30m:3:10m")
    assert (spec.kind, spec.target, spec.magnitude, spec.onset_s, spec.duration_s) == (
        "feeder_noise",
        "excipient_feeder",
        3.0,
        1800.0,
        600.0,
    )
    assert parse_fault("bridging@1h:0.8:0").target is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bridging", "is not KIND"),
        ("bridging@1h:0.8", "is not KIND"),
        ("gremlins@1h:1:1", "unknown fault 'gremlins'"),
        ("bridging@1h:lots:1", "is not a number"),
        ("bridging@soon:0.8:1", "not a duration"),
    ],
)
def test_bad_fault_specs(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_fault(text)


def test_run_summarises_ground_truth() -> None:
    plant = Plant(seed=4)
    summary = run(plant, 1.0, [parse_fault("bridging@30m:0.9:5m")])
    assert summary.state == "producing"
    assert summary.tablets_made == round(plant.ledger.tablets_made) > 40_000
    assert summary.true_oos_kg > 0.1  # the bridge starved the blend of API
    assert summary.oos_accepted > 0  # and with nobody watching, it went to accept
    assert abs(summary.balance_error_kg) < 1e-6
    assert summary.faults == ["bridging@api_feeder mag 0.9 from 1800 s to 2100 s"]


def test_cli_prints_summary_and_writes_csv(tmp_path: Path) -> None:
    out = tmp_path / "history.csv"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--hours",
            "0.25",
            "--seed",
            "3",
            "--fault",
            "nir_bias@5m:1:5m",
            "--csv",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "tablets made" in result.output and "nir_bias@nir" in result.output
    with out.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "time_s" and "nir.api_pct" in rows[0]
    assert len(rows) == 1 + 900  # one row per second of a quarter hour
    column = rows[0].index("line.state")
    assert rows[-1][column] == "2"  # producing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "gremlins@1:1:1"], "unknown fault 'gremlins'"),
        (["--fault", "bridging@1:5:1"], "magnitude 5 is outside 0..1"),
        (["--layout", "nowhere.toml"], "does not exist"),
        (["--hours", "0"], "--hours must be above 0"),
        (["--variation", "0.9"], "variation must be in"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["simulate", *args])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ")
    assert "Traceback" not in result.output
