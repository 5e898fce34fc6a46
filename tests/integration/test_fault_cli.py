"""`plant fault` as an operator runs it: a real process against a real OPC UA server.

Each call is the installed `plant` command in its own process, configured from PLANT_FAULT_*
variables as in a shell; the server is the twin behind asyncua on a free loopback port, 100x
faster than real time. Bad input, an unreachable server and a refused login must each give a
one-line error and their exit code, never a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.launcher import free_port

from .conftest import USERS, RunningServer, serve

pytestmark = pytest.mark.integration


def plant_exe() -> str:
    exe = shutil.which("plant", path=str(Path(sys.executable).parent))
    assert exe, "the `plant` entry point is installed with the package"
    return exe


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve(tmp_path_factory.mktemp("fault-cli")) as running:
        yield running


def fault(
    running: RunningServer | None, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `plant fault ARGS` as operator alice (env overrides the PLANT_FAULT_* variables)."""
    base = {
        "PLANT_FAULT_URL": running.url if running else "",
        "PLANT_FAULT_USER": "alice",
        "PLANT_FAULT_PASSWORD": USERS["alice"][1],
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_FAULT_")}
    return subprocess.run(
        [plant_exe(), "fault", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **base, **env, "COLUMNS": "200"},
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_inject_status_clear(server: RunningServer) -> None:
    done = fault(
        server,
        "inject",
        "bridging",
        "--magnitude",
        "0.5",
        "--duration",
        "1h",  # 36 s of wall time at 100x: still active when it is cleared on a busy machine
        "--reason",
        "cli test",
    )
    assert done.returncode == 0, done.stderr
    assert "injected bridging on api_feeder (0.5 fraction, 1h): fault" in done.stdout
    fault_id = int(done.stdout.rsplit("fault", 1)[1])

    status = fault(server, "status")
    assert status.returncode == 0, status.stderr
    assert "line: producing" in status.stdout
    assert f"fault #{fault_id} bridging on api_feeder, 0.5 fraction (active)" in status.stdout

    cleared = fault(server, "clear", "bridging", "--reason", "cli test over")
    assert cleared.returncode == 0, cleared.stderr
    assert f"cleared #{fault_id} bridging" in cleared.stdout
    assert "faults: none" in fault(server, "status").stdout

    again = fault(server, "clear", str(fault_id))
    assert again.returncode == 1
    assert "has already ended" in one_line_error(again)

    records = [r for r in server.audit() if r.reason.startswith("cli test")]
    assert [(r.user, r.action, r.accepted) for r in records] == [
        ("alice", "inject_fault", True),
        ("alice", "clear_fault", True),
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["inject", "gremlins"], 2, "unknown fault 'gremlins'"),
        (["inject", "bridging", "--magnitude", "1.5"], 2, "bad magnitude 1.5 for bridging"),
        (["inject", "bridging", "--target", "press"], 1, "bridging needs a feeder target"),
        (["clear", "999"], 1, "ClearFault"),
        (["clear", "punch_wear"], 1, "no pending or active punch_wear fault"),
    ],
)
def test_bad_arguments(server: RunningServer, args: list[str], code: int, message: str) -> None:
    done = fault(server, *args)
    assert done.returncode == code
    assert message in one_line_error(done)


def test_unreachable_server() -> None:
    done = fault(None, "status", PLANT_FAULT_URL=f"opc.tcp://127.0.0.1:{free_port()}/pcmm/site1")
    assert done.returncode == 3
    assert "plant unreachable at opc.tcp://127.0.0.1:" in one_line_error(done)


def test_wrong_password_and_viewer_are_not_authorised(server: RunningServer) -> None:
    wrong = fault(server, "status", PLANT_FAULT_PASSWORD="not-her-password")
    assert wrong.returncode == 4
    assert "not authorised" in one_line_error(wrong)
    viewer = fault(
        server, "inject", "nir_bias", "--user", "victor", "--password", USERS["victor"][1]
    )
    assert viewer.returncode == 4
    assert "not authorised: victor (viewer) may not call methods" in one_line_error(viewer)


def test_list_needs_no_server() -> None:
    done = fault(None, "list", PLANT_FAULT_URL="opc.tcp://127.0.0.1:1/nowhere")
    assert done.returncode == 0
    assert "refill_disturbance" in done.stdout and "diverter_stuck" in done.stdout


def test_line_commands(tmp_path: Path) -> None:
    with serve(tmp_path) as running:
        aborted = fault(running, "abort", "--reason", "e-stop drill")
        assert aborted.returncode == 0, aborted.stderr
        assert "abort: line faulted" in aborted.stdout
        refused = fault(running, "start")
        assert refused.returncode == 1
        assert "cannot start the line while it is faulted" in one_line_error(refused)
        assert "reset: line stopped" in fault(running, "reset").stdout
        assert "start: line starting" in fault(running, "start").stdout


def test_run_plays_a_scenario_in_plant_time(tmp_path: Path) -> None:
    scenario = tmp_path / "drill.yaml"
    scenario.write_text(
        "name: drill\n"
        "events:\n"
        "  - {at: 0, fault: nir_bias, magnitude: 0.5, reason: probe fouled}\n"
        "  - {at: 1m, setpoint: {tag: press.fill_depth_sp, value: 10.5}, reason: heavier}\n"
        "  - {at: 2m, clear: nir_bias, reason: probe cleaned}\n"
        "  - {at: 2m, setpoint: {tag: press.fill_depth_sp, value: 99}}\n"
        "  - {at: 3m, line: stop, reason: end of drill}\n"
    )
    with serve(tmp_path) as running:
        done = fault(running, "run", str(scenario))
        assert done.returncode == 1  # one event was refused; the rest went on
        out = done.stdout.splitlines()
        assert out[0].startswith("drill: 5 events, plant clock ")
        assert "inject nir_bias 0.5 on default target: fault" in out[1]
        assert "set press.fill_depth_sp = 10.5: accepted" in out[2]
        assert "clear nir_bias: cleared #" in out[3]
        assert "REFUSED: WriteSetpoint: press.fill_depth_sp: 99 mm is outside" in out[4]
        assert "line stop: line stopping" in out[5]
        assert "1 of 5 events refused" in one_line_error(done)
        records = {r.reason: r for r in running.audit() if r.user == "alice"}
        # Each event happened at its plant time after the first one. The run's times count
        # from the plant clock when it started, and the first event lands up to one server
        # tick after that (5 plant s at this speed, more when the machine is busy), so a later
        # event may be that much closer to the first.
        start = records["probe fouled"].time
        for reason, at in (
            ("heavier", 60),
            ("probe cleaned", 120),
            ("end of drill", 180),
        ):
            assert at - 10 <= records[reason].time - start <= at + 15, reason


def test_run_from_a_given_plant_time_waits_for_it_and_refuses_a_past_one(tmp_path: Path) -> None:
    scenario = tmp_path / "pinned.yaml"
    scenario.write_text(
        "name: pinned\n"
        "events:\n"
        "  - {at: 0, fault: nir_bias, magnitude: 0.5, reason: at the start}\n"
        "  - {at: 30s, clear: nir_bias, reason: 30 s later}\n"
    )
    with serve(tmp_path, start_utc="2030-01-01T00:00:00Z") as running:
        # The plant clock began at 2030-01-01T00:00:00Z: plant time t is that plus t seconds.
        done = fault(running, "run", str(scenario), "--start", "2030-01-01T00:10:00Z")
        assert done.returncode == 0, done.stderr
        first = done.stdout.splitlines()[0]
        assert first == "pinned: 2 events, plant clock 2030-01-01T00:10:00+00:00"
        records = {r.reason: r.time for r in running.audit() if r.user == "alice"}
        # Not from when the command started (the plant was at 0-300 s then) but from 600 s on;
        # each as late as a busy machine makes it (3 wall s at this speed is 300 plant s).
        assert 600 <= records["at the start"] < 900, records
        assert 630 <= records["30 s later"] < 930, records

        past = fault(running, "run", str(scenario), "--start", "2030-01-01T00:00:01Z")
        assert past.returncode == 2
        assert "is past: the plant clock is at 2030-01-01T00:" in one_line_error(past)
        for bad in ("-5m", "tomorrow"):
            refused = fault(running, "run", str(scenario), "--start", bad)
            assert refused.returncode == 2, bad
            assert "--start" in one_line_error(refused)
        assert [r for r in running.audit() if r.user == "alice"][2:] == []


def test_quarantine_flags_a_window_on_the_plant_clock(server: RunningServer) -> None:
    done = fault(server, "quarantine", "--from", "-30s", "--to", "now", "--reason", "cli test")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("quarantined ") and " tablets pressed " in done.stdout
    assert server.plant.ledger.tablets_quarantined > 0
    records = [r for r in server.audit() if r.action == "quarantine"]
    assert (records[-1].user, records[-1].reason, records[-1].accepted) == (
        "alice",
        "cli test",
        True,
    )
    too_long = fault(server, "quarantine", "--from=-1s", "--to", "2099-01-01T00:00:00Z")
    assert too_long.returncode == 1
    assert "longer than 3600 s" in one_line_error(too_long)
    bad = fault(server, "quarantine", "--from", "yesterday")
    assert bad.returncode == 2
    assert "neither 'now'" in one_line_error(bad)
