"""`plant alarm` as an operator runs it: the installed command, each call its own process,
against the project's OPC UA server on a free loopback port (100x faster than real time)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from .conftest import USERS, RunningServer, client, serve
from .test_fault_cli import one_line_error, plant_exe
from .test_opcua_server import call, d, s, until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve(tmp_path_factory.mktemp("alarm-cli")) as running:
        yield running


def alarm(
    running: RunningServer, *args: str, user: str = "alice"
) -> subprocess.CompletedProcess[str]:
    """Run `plant alarm ARGS` as `user` (PLANT_FAULT_* as in a shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_FAULT_")}
    env.update(
        PLANT_FAULT_URL=running.url,
        PLANT_FAULT_USER=user,
        PLANT_FAULT_PASSWORD=USERS[user][1],
        COLUMNS="200",
    )
    return subprocess.run(
        [plant_exe(), "alarm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def listed(running: RunningServer) -> dict[str, dict[str, object]]:
    done = alarm(running, "list", "--json")
    assert done.returncode == 0, done.stderr
    return {
        r["id"]: r for r in (json.loads(line) for line in done.stdout.splitlines() if line.strip())
    }


def raise_fault(running: RunningServer, kind: str, magnitude: float) -> None:
    async def go() -> None:
        async with client(running.url, "alice") as alice:
            result = await call(alice, running, "InjectFault", s(kind), s(""), d(magnitude))
            assert result.StatusCode.is_good()
            await until(lambda: running.server.conditions.state(f"equipment.{kind}").active)

    asyncio.run(go())


def test_list_ack_comment_shelve_unshelve_and_confirm_an_alarm(server: RunningServer) -> None:
    raise_fault(server, "bridging", 0.5)
    alarms = listed(server)
    bridging = alarms["equipment.bridging"]
    assert bridging["state"] == "active_unacked" and bridging["priority"] == 700

    table = alarm(server, "list")
    assert table.returncode == 0 and "equipment.bridging" in table.stdout

    done = alarm(server, "ack", "equipment.bridging", "--comment", "feeder crew called")
    assert done.returncode == 0, done.stderr
    after = listed(server)["equipment.bridging"]
    assert after["state"] == "active_acked"
    assert (after["user"], after["comment"]) == ("alice", "feeder crew called")

    assert (
        alarm(server, "comment", "equipment.bridging", "--comment", "hopper tapped").returncode == 0
    )
    assert (
        alarm(server, "shelve", "equipment.bridging", "--for", "4h", "--reason", "known").returncode
        == 0
    )
    assert listed(server)["equipment.bridging"]["shelving"] == "TimedShelved"
    assert alarm(server, "unshelve", "equipment.bridging").returncode == 0
    assert alarm(server, "confirm", "equipment.bridging", "--comment", "dealt with").returncode == 0
    assert listed(server)["equipment.bridging"]["confirmed"] is True

    actions = {
        (r.user, r.action, r.reason) for r in server.audit() if r.target == "equipment.bridging"
    }
    assert ("alice", "alarm_acknowledge", "feeder crew called") in actions
    assert ("alice", "alarm_shelve", "known") in actions
    assert ("alice", "alarm_confirm", "dealt with") in actions


def test_a_viewer_may_list_but_not_acknowledge(server: RunningServer) -> None:
    raise_fault(server, "nir_dropout", 0.2)
    assert "equipment.nir_dropout" in listed(server)
    done = alarm(server, "ack", "equipment.nir_dropout", user="victor")
    assert done.returncode == 4
    assert "not authorised" in one_line_error(done)


def test_acknowledging_twice_or_an_unknown_alarm_is_one_line_and_exit_1(
    server: RunningServer,
) -> None:
    raise_fault(server, "punch_wear", 0.1)
    assert alarm(server, "ack", "equipment.punch_wear").returncode == 0
    twice = alarm(server, "ack", "equipment.punch_wear")
    assert twice.returncode == 1 and "BadConditionBranchAlreadyAcked" in one_line_error(twice)
    unknown = alarm(server, "shelve", "no.such_alarm")
    assert unknown.returncode == 1 and "no such alarm" in one_line_error(unknown)


def test_out_of_service_needs_a_reason_and_is_audited_and_undone(server: RunningServer) -> None:
    raise_fault(server, "nir_bias", 0.5)
    bare = alarm(server, "out-of-service", "equipment.nir_bias")
    assert bare.returncode == 2 and "needs --reason" in one_line_error(bare)
    done = alarm(server, "out-of-service", "equipment.nir_bias", "--reason", "probe recalibration")
    assert done.returncode == 0, done.stderr
    assert server.server.conditions.state("equipment.nir_bias").out_of_service
    assert listed(server)["equipment.nir_bias"]["state"] == "out_of_service"
    assert alarm(server, "in-service", "equipment.nir_bias").returncode == 0
    assert not server.server.conditions.state("equipment.nir_bias").out_of_service
    actions = {
        (r.user, r.action, r.reason) for r in server.audit() if r.target == "equipment.nir_bias"
    }
    assert ("alice", "alarm_out_of_service", "probe recalibration") in actions
    assert any(action == "alarm_in_service" for _, action, _ in actions)
