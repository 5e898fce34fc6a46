"""`plant fault` and `plant kpi` without a server: parsing, formatting, and bad input.

(`tests/integration/test_fault_cli.py` runs them against a real OPC UA server.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from apps import fault_cli
from apps.fault_cli import FaultCliSettings, check_fault, format_duration, format_time, parse_when
from apps.fault_cli import app as fault_app
from apps.kpi_cli import kpi
from core.faults import CATALOGUE

runner = CliRunner()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (1200, "20m"), (6300, "1h45m"), (3630, "1h0m30s"), (7200, "2h")],
)
def test_format_time(seconds: float, text: str) -> None:
    assert format_time(seconds) == text


def test_format_duration() -> None:
    assert format_duration(0) == "until cleared"
    assert format_duration(300) == "5m"


def test_check_fault() -> None:
    assert check_fault("bridging", 0.5) == "fraction"
    assert check_fault("nir_bias", None) == "% w/w"
    with pytest.raises(ValueError, match="unknown fault 'gremlins'; known: refill_disturbance"):
        check_fault("gremlins", None)
    with pytest.raises(ValueError, match=r"bad magnitude 7 for bridging: must be 0\.\.1 fraction"):
        check_fault("bridging", 7.0)
    with pytest.raises(ValueError, match="bad magnitude nan"):
        check_fault("bridging", float("nan"))


def test_list_shows_the_catalogue_with_units(monkeypatch: pytest.MonkeyPatch) -> None:
    # Wide enough for the table not to wrap: set on the console, whose width is fixed when it is
    # made (at import) if COLUMNS is set then, as it is in a pytest-xdist worker (80).
    monkeypatch.setattr(fault_cli.console, "width", 200)
    result = runner.invoke(fault_app, ["list"])
    assert result.exit_code == 0
    for fault in CATALOGUE.values():
        assert fault.kind in result.output
    assert "% w/w" in result.output and "-5..5" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inject", "gremlins"], "error: unknown fault 'gremlins'"),
        (["inject", "bridging", "--magnitude", "2"], "error: bad magnitude 2 for bridging"),
        (["inject", "bridging", "--duration", "soon"], "is not a time"),
        (["clear", "gremlins"], "neither a fault id nor a kind"),
        (["quarantine", "--from", "yesterday"], "--from: 'yesterday' is neither 'now'"),
        (["quarantine", "--from", "-soon"], "is not a time"),
        (["quarantine", "--from", "-10m", "--to", "later"], "--to: 'later' is neither"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(fault_app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_quarantine_times_are_on_the_plant_clock() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_when("now", now, "--to") == now
    assert parse_when("-10m", now, "--from") == datetime(2026, 1, 2, 2, 54, 5, tzinfo=UTC)
    assert parse_when("2026-01-02T03:00:00Z", now, "--from") == datetime(
        2026, 1, 2, 3, 0, tzinfo=UTC
    )
    assert parse_when("2026-01-02T03:00:00", now, "--from").tzinfo is UTC  # naive: UTC


def test_bad_scenario_is_refused_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  - {at: 1m, fault: bridging, magnitude: 3}\n")
    result = runner.invoke(fault_app, ["run", str(bad)])
    assert result.exit_code == 2
    assert "bad magnitude 3 for bridging" in result.output
    missing = runner.invoke(fault_app, ["run", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def _kpi_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(kpi)
    app.command("other")(lambda: None)  # two commands: typer keeps the command name
    return app


def test_kpi_scores_a_short_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "short.yaml"
    scenario.write_text(
        "name: short\nseed: 2\nhours: 0.25\n"
        "events:\n  - {at: 3m, fault: bridging, magnitude: 0.8, duration: 3m}\n"
    )
    on = runner.invoke(_kpi_app(), ["kpi", "--scenario", str(scenario), "--json"])
    off = runner.invoke(
        _kpi_app(), ["kpi", "--scenario", str(scenario), "--json", "--no-controller"]
    )
    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    scores, baseline = json.loads(on.output), json.loads(off.output)
    assert scores["controller"] and not baseline["controller"]
    assert scores["oos_accepted"] == 0 < baseline["oos_accepted"]
    assert scores["detection_delay_s"]["bridging@180"] is not None
    table = runner.invoke(_kpi_app(), ["kpi", "--scenario", str(scenario)])
    assert "OOS tablets accepted" in table.output and "detected bridging@180" in table.output


def test_kpi_bad_scenario() -> None:
    result = runner.invoke(_kpi_app(), ["kpi", "--scenario", "/nonexistent.yaml"])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_every_setting_is_in_the_example() -> None:
    example = Path(__file__).parents[2] / "apps" / "fault.env.example"
    keys = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert keys == {f"PLANT_FAULT_{name.upper()}" for name in FaultCliSettings.model_fields}
