"""End-to-end acceptance: every physical fault of the catalogue through the running stack.

A pod runs as `plant demo --no-view` runs it: Mosquitto (deploy/mosquitto's config and ACL),
the twin behind its OPC UA server, the edge and the supervisory controller in charge, each its
own process, accelerated, and a historian writing to InfluxDB 1.x (testkit, through the
test-only v2 write proxy). The operator plays scenarios/acceptance.yaml into it with `plant
fault run`, using the command and credentials the demo printed: each fault of shared/domain.md
(1-13) has a window of plant time before the next one starts. The baseline is the same twin
(seed, warm start) with no controller, run in process with the scenario at the same plant time
(`uncontrolled_escapes`). Then:

- InfluxDB holds every sample the controlled pod's OPC UA server published: per tag, the
  server's own history (read back with HistoryRead, its window set wide enough for the whole
  run) against the points stored: 0 lost, 0 extra, 0 duplicates;
- every fault and every controller action is an audit event in InfluxDB with its reason, and
  the plant's audit trail reached InfluxDB without a gap (its sequence numbers are 1..N);
- per fault, in its window: the ground truth (Simulation: diverter.true_oos_accepted, read back
  with HistoryRead) says the controlled pod accepted no out-of-spec tablet; the controller
  raised the fault's alarm (an `alarm` event on MQTT, as the operator sees it); and where the
  fault makes out-of-spec tablets by itself, the baseline accepted some (so this can fail);
- over the whole run, InfluxDB's ground truth says no out-of-spec tablet was accepted;
- the demo stops cleanly on Ctrl-C.

The controlled pod's controller is also stopped (SIGSTOP) for `STALL_WALL_S` at a time, as a
loaded machine's neighbours stall it (a CI run released 458 OOS tablets that way): each stall
is 150 plant s, at a time after the onset of a fault in `STALLED`, and the checks above hold
through them.

The scenario is played from a fixed plant time (`plant fault run --start`), `SCENARIO_FROM_S`
after the twin starts, as in the baseline: each fault meets the plant at the same point of its
own history (a refill due, a hopper half full) in every run, whatever the start-up took on the
wall clock. Played from when the player happened to start, that point moved by hundreds of
plant seconds from run to run.

A second, watch-only pod was the baseline before: the two took 1.81 of the
machine's 2 cores (user+sys 514 s over a 284 s run), and the controlled one, starved, failed 9
checks with nothing else running (and 10 in a CI run). The in-process baseline gives the same
escapes (refill 903, bridging 4,820, load cell 2,458, denser lot 4,639, turret 207 OOS tablets;
the watch-only pod: 903, 4,820-4,834, 2,458, 4,681, 207-222) in 1.4 s of one core.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asyncua import Client, ua

from apps.campaign import run_campaign
from apps.scenario import ScenarioEvent, load_scenario
from apps.stack import read_secret
from core.layout import load_layout
from core.payload import Event, decode_event
from core.tags import LINE_STATES, build_registry
from core.timebase import to_ns
from opcua_server.address_space import tag_node_name
from testkit.loss import Tally, influx_times, published_times, tally
from testkit.servers import InfluxDB, Mosquitto, need, running_influxdb
from tests.support.demo import DemoProcess, demo_command
from tests.support.mqtt import Collector, collect, wait_until

# Alone: a pod starved by a neighbouring one fails (see above); scripts/test runs it first.
pytestmark = [pytest.mark.integration, pytest.mark.alone]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_PATH = ROOT / "scenarios" / "acceptance.yaml"
SCENARIO = load_scenario(SCENARIO_PATH)
SPEED = 50.0
SITE = "site1"
NAMESPACE = "urn:pcmm-twin:opcua"
TRUTH = "diverter.true_oos_accepted"
REGISTRY = build_registry(load_layout(None).modules)  # site1: the nominal pod

#: The faults of the catalogue, each with its window: a second event with the same fault number
#: (13's companion disturbance) belongs to the first one's window.
FAULTS = [
    e
    for i, e in enumerate(SCENARIO.events)
    if e.action == "fault" and e.reason.split(":")[0] not in {
        p.reason.split(":")[0] for p in SCENARIO.events[:i] if p.action == "fault"
    }
]  # fmt: skip

#: Faults that make out-of-spec tablets by themselves here (the in-process baseline,
#: `plant kpi --scenario scenarios/acceptance.yaml`, agrees). The others are caught and handled
#: but would not make any in their window: a drift the feeder compensates, a noisy feeder, a
#: biased or dropping probe the controller must not act on, a slower blender, worn punches, a
#: sticking actuator; and a seized gate changes nothing when no controller asks it to move.
ESCAPES = {
    "refill_disturbance",
    "bridging",
    "load_cell_drift",
    "lot_density_change",
    "turret_speed_step",
}

#: Faults during which the controlled pod's controller is stalled for `STALL_WALL_S`, and when
#: (plant s after the onset): where a stall of 150 plant s made the controller of 4bfb69b,
#: in process, release 108 and 86 OOS tablets (`Link`; tests/unit/test_closed_loop.py).
STALLED = {"refill_disturbance": 200.0, "lot_density_change": 170.0}
STALL_WALL_S = 3.0

#: Plant seconds from the twins' start to the scenario's: the start-up to "ready" took 22-25 s
#: of wall time here (1,100-1,250 plant s at 50x); the rest is margin for a slower machine.
SCENARIO_FROM_S = 2400.0

#: Detection not required within the window, with the reason. Stiction shows only when the weight
#: loop happens to ask for a move inside the actuator's stick band; tests/unit/test_closed_loop.py
#: gives it 20 min.
SLOW_TO_DETECT = {"fill_depth_stiction": "shows only on a small weight-loop move"}


@dataclass
class Pod:
    """One pod of the stack and what it reported."""

    demo: DemoProcess
    state: Path
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    alarms: Collector | None = None
    start: datetime | None = None  # the plant clock when the scenario started
    end: datetime | None = None  # the plant clock when the last window had passed
    truth: list[tuple[datetime, float]] = field(default_factory=list)
    line: str = ""  # the line state at the end, as `plant fault status` says

    def window(self, fault: ScenarioEvent) -> tuple[datetime, datetime]:
        """The fault's window in this pod's plant time: its onset up to the next fault's."""
        assert self.start is not None
        onset_s, end_s = window_s(fault)
        return self.start + timedelta(seconds=onset_s), self.start + timedelta(seconds=end_s)

    def oos_between(self, begin: datetime, end: datetime) -> float:
        """OOS tablets accepted in [begin, end): the truth counter's rise over the window."""
        before = [v for t, v in self.truth if t < begin]
        inside = [v for t, v in self.truth if t < end]
        return (inside[-1] if inside else 0.0) - (before[-1] if before else 0.0)

    def raises(self) -> Iterator[tuple[datetime, Event]]:
        """Every alarm raised, as the operator saw it on MQTT, with its plant time."""
        assert self.alarms is not None
        for payload in self.alarms.payloads():
            event = decode_event(payload)
            if event.action == "raise":
                yield datetime.fromtimestamp(event.time_ns / 1e9, tz=UTC), event

    def alarms_raised(self, begin: datetime, end: datetime) -> set[str]:
        return {event.target for when, event in self.raises() if begin <= when < end}

    def raised_after(self, kind: str, onset: datetime) -> float | None:
        """Plant seconds from `onset` to the first raise of `kind`'s alarm after it: how late
        a detection was that missed its window (None: never raised)."""
        return next(
            (
                (when - onset).total_seconds()
                for when, event in self.raises()
                if event.target == kind and when >= onset
            ),
            None,
        )

    def faulted_before(self, end: datetime) -> list[str]:
        """When the line faulted (an abort or a trip: it stays down without a reset) before
        `end`, with the alarm's message: a later fault then falls on a stopped line."""
        return [
            f"{when:%H:%M:%S} ({event.reason})"
            for when, event in self.raises()
            if event.target == "line.faulted" and when < end
        ]

    def stop(self) -> None:
        if self.alarms is not None:
            self.alarms.client.disconnect()
            self.alarms.client.loop_stop()
            self.alarms = None
        if self.demo.proc.poll() is None:
            self.demo.proc.send_signal(signal.SIGINT)
            self.demo.proc.wait(60)


@dataclass
class Run:
    controlled: Pod
    baseline: dict[float, float]  # OOS tablets accepted with no controller, by fault onset
    influxdb: InfluxDB


def window_s(fault: ScenarioEvent) -> tuple[float, float]:
    """The fault's window in scenario seconds: its onset up to the next fault's."""
    later = [f.at_s for f in FAULTS if f.at_s > fault.at_s]
    return fault.at_s, later[0] if later else SCENARIO.hours * 3600


def uncontrolled_escapes() -> dict[float, float]:
    """The baseline: per fault (by onset), the OOS tablets its window accepted in a run of the
    twin with no controller, in process, with the scenario `SCENARIO_FROM_S` after the start
    as in the pod."""
    events = tuple(replace(e, at_s=e.at_s + SCENARIO_FROM_S) for e in SCENARIO.events)
    late = replace(SCENARIO, hours=SCENARIO.hours + SCENARIO_FROM_S / 3600, events=events)
    slices = run_campaign(late, controlled=False).plant.ledger.slices
    escapes = {}
    for fault in FAULTS:
        onset, end = (t + SCENARIO_FROM_S for t in window_s(fault))
        escapes[fault.at_s] = sum(
            s.tablets
            for s in slices
            if onset <= s.time < end and s.oos and not s.diverted and not s.quarantined
        )
    return escapes


def broker_of(pod: Pod) -> Mosquitto:
    """The pod's broker, logged in as its `operator` (the user the live view uses)."""
    port = int(pod.demo.wait_for(r"mqtt://127\.0\.0\.1:(\d+)", 1).group(1))
    password = read_secret(pod.state / "secrets", "mqtt_operator_password")
    return Mosquitto(port, pod.state, {"operator": password})


def server_history(url: str, begin: datetime, end: datetime) -> dict[str, list[int]]:
    """Every sample the server published in [begin, end], per tag id: source times in ns."""

    async def read() -> dict[str, list[int]]:
        async with Client(url, timeout=30) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            return await published_times(client, ns, SITE, REGISTRY.values(), begin, end)

    # The test's own session may be dropped while it reads 100,000+ samples on a loaded
    # machine (seen with two CI runs at once: "client is disconnected"); the record is the
    # server's, so a new session reads it again.
    for attempt in range(HISTORY_READ_TRIES):
        try:
            return asyncio.run(read())
        except (ConnectionError, TimeoutError, OSError):
            if attempt == HISTORY_READ_TRIES - 1:
                raise
    raise AssertionError("not reached")


HISTORY_READ_TRIES = 3


def truth_history(url: str, begin: datetime, end: datetime) -> list[tuple[datetime, float]]:
    """Every value the server published of the OOS-accepted counter, with its source time."""

    async def read() -> list[tuple[datetime, float]]:
        async with Client(url, timeout=30) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            node = client.get_node(ua.NodeId(tag_node_name(SITE, REGISTRY[TRUTH]), ns))
            values = await node.read_raw_history(begin, end, numvalues=0)
            return [
                (v.SourceTimestamp.replace(tzinfo=UTC), float(v.Value.Value))
                for v in values
                if v.Value is not None and v.Value.Value is not None
            ]

    return asyncio.run(read())


def plant_status(url: str) -> tuple[datetime, str]:
    """The plant clock and the line state, read over OPC UA in this process (a `plant fault
    status` process took over 30 s to start on a loaded machine)."""

    async def read() -> tuple[datetime, str]:
        async with Client(url, timeout=30) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            node = client.get_node(ua.NodeId(tag_node_name(SITE, REGISTRY["line.state"]), ns))
            data = await node.read_data_value()
            stamp: datetime | None = data.SourceTimestamp
            assert stamp is not None and data.Value is not None
            state = LINE_STATES[int(data.Value.Value)]
            return (stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)), state

    return asyncio.run(read())


def stall_controller(pid: int, url: str, scenario_start: datetime) -> None:
    """Stop the controller for `STALL_WALL_S` in each fault of `STALLED`, on the wall clock
    (the plant's runs on it, from the plant clock read once)."""
    now, wall = plant_status(url)[0], time.monotonic()
    started = wall + (scenario_start - now).total_seconds() / SPEED
    for fault in (f for f in FAULTS if f.kind in STALLED):
        at = started + (fault.at_s + STALLED[fault.kind]) / SPEED
        time.sleep(max(0.0, at - time.monotonic()))
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return  # the run is over already
        try:
            time.sleep(STALL_WALL_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        print(
            f"controller stalled {STALL_WALL_S:g} s: {fault.describe()} + {STALLED[fault.kind]:g} s"
        )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    need("mosquitto")
    baseline = uncontrolled_escapes()  # (1.4 s, before the pod takes the cores)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_")}
    plant_zero = datetime.now(UTC).replace(microsecond=0)
    scenario_start = plant_zero + timedelta(seconds=SCENARIO_FROM_S)
    env.update(
        # The twin's plant time 0 at a known UTC time: the scenario is played `SCENARIO_FROM_S` on.
        PLANT_OPCUA_START_UTC=plant_zero.isoformat(),
        # 2.5 plant seconds between publications at this speed (2 at 20x by default).
        PLANT_OPCUA_PUBLISH_PERIOD_S="0.05",
        # The server keeps every sample of the run: the ground truth InfluxDB is counted against.
        PLANT_OPCUA_HISTORY_WINDOW_S=str(int(SCENARIO_FROM_S + SCENARIO.hours * 3600 + 3600)),
        PLANT_OPCUA_HISTORY_MAX_SAMPLES="500000",
    )
    duration = str((SCENARIO_FROM_S + SCENARIO.hours * 3600) / SPEED + 300)  # the demo's own
    args = ["--no-view", "--speed", str(SPEED), "--duration", duration]
    with running_influxdb() as influxdb:
        historian = {
            "PLANT_HISTORIAN_INFLUX_URL": influxdb.v2_url,
            "PLANT_HISTORIAN_INFLUX_BUCKET": influxdb.db,
            "PLANT_HISTORIAN_FLUSH_INTERVAL_S": "0.2",
        }
        state = tmp_path_factory.mktemp("controlled")
        pod = Pod(DemoProcess([*args, "--state-dir", str(state)], {**env, **historian}), state)
        try:
            pod.demo.wait_for(r"^ready: \d+ processes healthy", 120)
            pod.command, pod.env = demo_command(pod.demo, SITE)
            pod.alarms = collect(broker_of(pod), "operator", f"pcmm/v1/{SITE}/events/alarm")
            # The operator plays the scenario into the pod, as the README shows.
            player = subprocess.Popen(
                [pod.command[0], "fault", "run", str(SCENARIO_PATH),
                 "--start", scenario_start.isoformat()],
                env=pod.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            stalls = threading.Thread(
                target=stall_controller,
                args=(pod.demo.pids()[f"controller-{SITE}"], pod.env["PLANT_FAULT_URL"],
                      scenario_start),
                daemon=True,
            )  # fmt: skip
            stalls.start()
            out, _ = player.communicate(
                timeout=(SCENARIO_FROM_S + SCENARIO.hours * 3600) / SPEED + 120
            )
            print(f"player:\n{out}")
            assert player.returncode == 0, out
            started = re.search(r"plant clock (\S+)", out)
            assert started, out
            pod.start = datetime.fromisoformat(started.group(1))
            end = pod.start + timedelta(hours=SCENARIO.hours)
            to_go_s = SCENARIO.hours * 3600 - SCENARIO.events[-1].at_s
            wait_until(
                lambda: plant_status(pod.env["PLANT_FAULT_URL"])[0] >= end,
                to_go_s / SPEED + 60, "the end of the scenario in the pod's plant time", step=2.0,
            )  # fmt: skip
            pod.end, pod.line = plant_status(pod.env["PLANT_FAULT_URL"])
            pod.truth = truth_history(
                pod.env["PLANT_FAULT_URL"], pod.start - timedelta(hours=1), pod.end
            )
            yield Run(pod, baseline, influxdb)
        finally:
            pod.stop()
            print(f"{pod.state.name}: {pod.demo.text()[-3000:]}")


def test_influxdb_holds_every_published_sample_once(run: Run) -> None:
    pod = run.controlled
    assert pod.start is not None and pod.end is not None
    truth = server_history(pod.env["PLANT_FAULT_URL"], pod.start - timedelta(hours=1), pod.end)
    end_ns = to_ns(pod.end) - 2_000_000_000  # what the edge may not have sent yet is not lost
    result: Tally | None = None

    def all_stored() -> bool:
        nonlocal result
        stored = influx_times(run.influxdb, SITE)
        start = {tag: min(times) for tag, times in stored.items()}
        result = tally(truth, stored, start, end_ns)
        return result.lost == 0

    wait_until(all_stored, 60, "every published sample in InfluxDB", step=2.0)
    assert result is not None
    print(f"samples: {result}")
    assert len(influx_times(run.influxdb, SITE)) == len(truth), "a tag never reached InfluxDB"
    assert (result.lost, result.extra, result.duplicates) == (0, 0, 0), str(result)
    assert result.expected > 100_000


def test_every_fault_and_controller_action_is_audited(run: Run) -> None:
    audit = run.influxdb.query(
        f"SELECT * FROM events WHERE site = '{SITE}' AND kind = 'audit' AND source = 'twin'"
    )
    injected = [r for r in audit if r["action"] == "inject_fault"]
    for event in SCENARIO.events:
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
    targets = sorted({r["target"] for r in by_controller})
    print(f"controller actions: {len(by_controller)} on {targets}")
    faults = run.influxdb.query(f"SELECT * FROM events WHERE site = '{SITE}' AND kind = 'fault'")
    raised = {r["target"].split("@")[0] for r in faults if r["action"] == "fault_raised"}
    assert {e.kind for e in FAULTS} <= raised


@pytest.mark.parametrize("fault", FAULTS, ids=[f.kind for f in FAULTS])
def test_each_fault_is_handled_and_no_oos_tablet_accepted(run: Run, fault: ScenarioEvent) -> None:
    controlled = run.controlled
    begin, end = controlled.window(fault)
    oos = controlled.oos_between(begin, end)
    raised = controlled.alarms_raised(begin, end)
    escaped = run.baseline[fault.at_s]
    print(f"{fault.describe()}: controlled {oos:.0f} OOS accepted, alarms {sorted(raised)}; "
          f"baseline {escaped:.0f} OOS accepted")  # fmt: skip
    assert controlled.truth, "no ground truth read back"
    # (Below zero: a quarantine in this window took back tablets accepted in an earlier one,
    # whose own check has failed.)
    assert oos <= 0, f"{oos:.0f} OOS tablets accepted with the controller in charge: " + _oos_story(
        run.influxdb
    )
    if fault.kind not in SLOW_TO_DETECT:
        faulted = controlled.faulted_before(end)
        late = controlled.raised_after(fault.kind, begin)
        assert fault.kind in raised, (
            f"no {fault.kind} alarm from the controller: {sorted(raised)}"
            + (f"; the line had faulted at {', '.join(faulted)}" if faulted else "")
            + (f"; raised {late:.0f} s after the onset" if late is not None else "; never raised")
            + _line_story(run.influxdb, end)
        )
    if fault.kind in ESCAPES:
        assert escaped > 0, "the baseline accepted no OOS tablet: this fault proves nothing"
    if fault.kind == "diverter_stuck":
        assert controlled.line == "faulted", "a seized gate must stop the line"


def test_no_oos_tablet_accepted_over_the_whole_run(run: Run) -> None:
    rows = run.influxdb.query(
        f"SELECT last(\"true_oos_accepted\") FROM truth WHERE site = '{SITE}' "
        "AND module = 'diverter'"
    )
    assert rows, "no ground truth stored"
    # On failure, the story: when, what the controller said and its last API trims.
    assert rows[0]["last"] == 0, _oos_story(run.influxdb)


def test_the_demo_stops_cleanly(run: Run) -> None:
    pod = run.controlled
    pod.stop()
    assert pod.demo.proc.returncode == 0, pod.demo.text()[-3000:]


def _oos_story(influxdb: InfluxDB) -> str:
    """When OOS tablets were accepted, against the faults and the controller's alarms."""
    rows = influxdb.query(
        f"SELECT true_oos_accepted FROM truth WHERE site = '{SITE}' AND module = 'diverter'"
    )
    steps, last = [], 0
    for row in rows:
        value = row["true_oos_accepted"]
        if value is not None and value != last:
            steps.append((_clock(row["time"]), value))
            last = value
    faults = influxdb.query(f"SELECT * FROM events WHERE site = '{SITE}' AND kind = 'fault'")
    raised = [(_clock(r["time"]), r["target"], r["action"]) for r in faults]
    alarms = influxdb.query(
        f"SELECT action, target, reason FROM events WHERE site = '{SITE}' AND kind = 'alarm'"
    )
    said = [(_clock(r["time"]), r["action"], r["target"], r["reason"]) for r in alarms]
    api = influxdb.query(
        f"SELECT reason FROM events WHERE site = '{SITE}' AND kind = 'audit' "
        "AND source = 'twin' AND target = 'api_feeder.mass_flow_sp'"
    )
    trims = [(_clock(r["time"]), r["reason"]) for r in api][-12:]
    # The gate's commands and quarantines around the first increase, as the twin audited them.
    first = steps[0][0] if steps else ""
    moves = _audited(influxdb, ("diverter.position_sp", "genealogy", "line"))
    near = [m for m in moves if m[0] <= first][-6:] + [m for m in moves if m[0] > first][:6]
    return (
        f"{last} OOS tablets accepted; increases {steps[:8]}; faults {raised}; "
        f"controller alarms {said}; last API trims {trims}; the gate around the first "
        f"increase {near}"
    )


def _line_story(influxdb: InfluxDB, end: datetime) -> str:
    """What kept a controller from raising an alarm: the line commands up to `end` and the
    gate's last ones, as the twin audited them, with their reasons (a line stopped for
    diverting too long makes nothing to detect a fault in)."""
    moves = _audited(influxdb, ("diverter.position_sp", "line"), end)
    line = [m for m in moves if m[1] == "line"]
    gate = [m for m in moves if m[1] != "line"][-6:]
    return f"; line commands {line}; the gate's last commands {gate}"


def _audited(
    influxdb: InfluxDB, targets: tuple[str, ...], before: datetime | None = None
) -> list[tuple[str, str, object, str, object]]:
    """The commands on `targets` the twin audited (before `before`, when given): (clock,
    target, new value, reason, accepted)."""
    which = " OR ".join(f"target = '{target}'" for target in targets)
    until = f" AND time < {to_ns(before)}" if before is not None else ""
    rows = influxdb.query(
        f"SELECT target, new, reason, accepted FROM events WHERE site = '{SITE}' "
        f"AND kind = 'audit' AND source = 'twin' AND ({which}){until}"
    )
    return [(_clock(r["time"]), r["target"], r["new"], r["reason"], r["accepted"]) for r in rows]


def _clock(time_ns: object) -> str:
    return datetime.fromtimestamp(int(str(time_ns)) / 1e9, tz=UTC).strftime("%H:%M:%S")
