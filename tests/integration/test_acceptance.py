"""End-to-end acceptance: the whole loop, every service its own process, a short fault campaign.

`plant demo --no-view` starts Mosquitto (deploy/mosquitto's config and ACL), the twin behind
its OPC UA server at 20x, the edge, the supervisory controller and the historian, which
writes to InfluxDB 1.x from tests/support through the test-only v2 write proxy. The operator
plays scenarios/acceptance.yaml (four physical faults) with `plant fault run`, using the
command and credentials the demo printed. Then:

- InfluxDB holds every sample the OPC UA server published: per tag, the server's own history
  (read back with OPC UA HistoryRead, its window set wide enough for the whole run) against
  the points stored, from each tag's first stored point to a plant time after the campaign:
  0 lost, 0 extra, 0 duplicates;
- every fault of the campaign and every controller action is an audit event in InfluxDB with
  its reason, and the plant's audit trail reached InfluxDB without a gap (its sequence
  numbers are 1..N);
- the ground truth (Simulation: diverter.true_oos_accepted) says no OOS tablet was accepted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from asyncua import Client, ua

from bridge.edge.opcua import to_ns
from opcua_server.address_space import tag_node_name
from plant.scenario import load_scenario
from plant.tags import build_registry
from tests.support.demo import DemoProcess, demo_command, fault_status
from tests.support.mqtt import wait_until
from tests.support.servers import InfluxDB, need
from twin.layout import load_layout

from .edge_harness import Tally, influx_times, tally

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "acceptance.yaml"
SPEED = 20.0
SITE = "site1"
NAMESPACE = "urn:pcmm-twin:opcua"
AFTER_CAMPAIGN_S = 120.0  # plant s after the last fault ends: diversions and recoveries done


@pytest.fixture
def demo(influxdb: InfluxDB, tmp_path: Path) -> DemoProcess:
    need("mosquitto")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_")}
    env.update(
        PLANT_HISTORIAN_INFLUX_URL=influxdb.v2_url,
        PLANT_HISTORIAN_INFLUX_BUCKET=influxdb.db,
        PLANT_HISTORIAN_FLUSH_INTERVAL_S="0.2",
        # The server keeps every sample of the run: the ground truth InfluxDB is counted against.
        PLANT_OPCUA_HISTORY_WINDOW_S="7200",
        PLANT_OPCUA_HISTORY_MAX_SAMPLES="500000",
    )
    args = ["--no-view", "--speed", str(SPEED), "--duration", "600"]
    return DemoProcess([*args, "--state-dir", str(tmp_path / "demo")], env)


def plant_clock(command: list[str], env: dict[str, str]) -> datetime:
    return fault_status(command, env)[0]


def server_history(url: str, end: datetime) -> dict[str, list[int]]:
    """Every sample the server published up to `end`, per tag id: source times in ns."""
    registry = build_registry(load_layout(None).modules)  # site1: the nominal pod

    async def read() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        async with Client(url, timeout=30) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            for tag in registry.values():
                node = client.get_node(ua.NodeId(tag_node_name(SITE, tag), ns))
                values = await node.read_raw_history(endtime=end, numvalues=0)
                out[tag.id] = [to_ns(v.SourceTimestamp) for v in values]
        return out

    return asyncio.run(read())


def _oos_story(influxdb: InfluxDB, faults: list[dict[str, object]]) -> str:
    """When OOS tablets were accepted, against when the faults were raised (plant time)."""
    rows = influxdb.query(
        f"SELECT true_oos_accepted FROM truth WHERE site = '{SITE}' AND module = 'diverter'"
    )
    steps, last = [], 0
    for row in rows:
        value = row["true_oos_accepted"]
        if value is not None and value != last:
            steps.append((datetime.fromtimestamp(row["time"] / 1e9).isoformat(), value))
            last = value
    raised = [(datetime.fromtimestamp(int(str(r["time"])) / 1e9).isoformat(), r["target"],
               r["action"]) for r in faults]  # fmt: skip
    alarms = influxdb.query(
        f"SELECT action, target, reason FROM events WHERE site = '{SITE}' AND kind = 'alarm'"
    )
    said = [(_clock(r["time"]), r["action"], r["target"], r["reason"]) for r in alarms]
    api = influxdb.query(
        f"SELECT reason FROM events WHERE site = '{SITE}' AND kind = 'audit' "
        "AND source = 'twin' AND target = 'api_feeder.mass_flow_sp'"
    )
    trims = [(_clock(r["time"]), r["reason"]) for r in api][-12:]
    return (
        f"{last} OOS tablets accepted; increases {steps[:8]}; faults {raised}; "
        f"controller alarms {said}; last API trims {trims}"
    )


def _clock(time_ns: object) -> str:
    return datetime.fromtimestamp(int(str(time_ns)) / 1e9).strftime("%H:%M:%S")


def test_a_short_campaign_end_to_end_loses_nothing_audits_everything_accepts_no_oos(
    demo: DemoProcess, influxdb: InfluxDB
) -> None:
    try:
        demo.wait_for(r"^ready: \d+ processes healthy", 120)
        command, env = demo_command(demo, SITE)
        url = env["PLANT_FAULT_URL"]

        # The operator plays the campaign from another process, as the README shows.
        played = subprocess.run(
            [command[0], "fault", "run", str(SCENARIO)], env=env, capture_output=True,
            text=True, timeout=180, check=False,
        )  # fmt: skip
        print(played.stdout)
        assert played.returncode == 0, played.stdout + played.stderr
        scenario = load_scenario(SCENARIO)
        # `run` returns once the last event is carried out: let the last fault end and the
        # line recover before counting.
        last = scenario.events[-1]
        to_go_s = max(e.at_s + e.duration_s for e in scenario.events) - last.at_s
        until = plant_clock(command, env).timestamp() + to_go_s + AFTER_CAMPAIGN_S
        wait_until(
            lambda: plant_clock(command, env).timestamp() >= until,
            (to_go_s + AFTER_CAMPAIGN_S) / SPEED + 60,
            "the campaign's end in plant time",
            step=2.0,
        )
        end = plant_clock(command, env)

        # 1. Every published sample stored, none twice, none invented.
        truth = server_history(url, end)
        end_ns = to_ns(end) - 2_000_000_000  # what the edge may not have sent yet is not lost
        result: Tally | None = None

        def all_stored() -> bool:
            nonlocal result
            stored = influx_times(influxdb, SITE)
            start = {tag: min(times) for tag, times in stored.items()}
            result = tally(truth, stored, start, end_ns)
            return result.lost == 0

        wait_until(all_stored, 60, "every published sample in InfluxDB", step=2.0)
        assert result is not None
        print(f"samples: {result}")
        assert len(influx_times(influxdb, SITE)) == len(truth), "a tag never reached InfluxDB"
        assert (result.lost, result.extra, result.duplicates) == (0, 0, 0), str(result)
        assert result.expected > 10_000

        # 2. Every fault and every controller action audited with its reason; no gap.
        audit = influxdb.query(
            f"SELECT * FROM events WHERE site = '{SITE}' AND kind = 'audit' AND source = 'twin'"
        )
        injected = [r for r in audit if r["action"] == "inject_fault"]
        for event in scenario.events:
            assert any(
                r["reason"] == event.reason and r["target"].startswith(event.kind)
                and r["accepted"] for r in injected
            ), f"no audit record of {event.describe()} ({event.reason}) in {injected}"  # fmt: skip
        seqs = sorted({int(r["seq"]) for r in audit})
        assert seqs, "no audit record of the twin reached InfluxDB"
        # From the first record on (those made before the edge subscribed are read back with
        # AuditSince), none may be missing.
        missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
        assert not missing, f"the audit trail has a gap in InfluxDB: {missing[:20]}"
        by_controller = [r for r in audit if str(r["user"]).startswith("controller")]
        assert by_controller, "the controller never acted"
        assert all(r["reason"] for r in by_controller), "a controller action without a reason"
        kinds = {r["target"] for r in by_controller}
        print(f"controller actions: {len(by_controller)} on {sorted(kinds)}")
        faults = influxdb.query(f"SELECT * FROM events WHERE site = '{SITE}' AND kind = 'fault'")
        raised = {r["target"].split("@")[0] for r in faults if r["action"] == "fault_raised"}
        assert {e.kind for e in scenario.events} <= raised

        # 3. Ground truth: not one out-of-spec tablet accepted.
        rows = influxdb.query(
            f"SELECT last(\"true_oos_accepted\") FROM truth WHERE site = '{SITE}' "
            "AND module = 'diverter'"
        )
        assert rows, "no ground truth stored"
        # On failure, the story: when OOS tablets were accepted, the faults, what the controller
        # said and its last API trims.
        assert rows[0]["last"] == 0, _oos_story(influxdb, faults)
    finally:
        if demo.proc.poll() is None:
            demo.proc.send_signal(signal.SIGINT)
            demo.proc.wait(40)
        print(demo.text()[-4000:])
    assert demo.proc.returncode == 0
