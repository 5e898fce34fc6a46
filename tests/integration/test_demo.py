"""`plant demo` as a user runs it: one process that starts the whole loop, then stops it all.

The demo runs as a subprocess (`--no-view --sites 2`, accelerated) with a real Mosquitto
(the local binary the demo starts itself) and, as a user would point it at an InfluxDB 2,
PLANT_HISTORIAN_INFLUX_URL at the test's InfluxDB 1.x behind the test-only v2 write proxy.
The test reads the demo's own output, as a user would: the pid of every child, the `ready`
line, and the `plant fault` command to paste into another terminal, which it runs as printed.
Then it checks that every service is healthy (the compose healthchecks' functions, each with
its own generated credentials), that telemetry of both sites flows on MQTT, that the injected
fault comes back as an event (on MQTT, in the demo's output and in InfluxDB), and that after
SIGINT the demo exits 0 and not one of its children is left.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from PIL import Image

from apps.demo.services import LocalInflux, wait_for_influx
from apps.health import Broker, require_online
from apps.launcher import free_port, stop_all
from apps.report import SECTIONS
from apps.stored import Source, completeness
from bridge.historian.influxql import query_rows
from core.payload import decode_batch, decode_event
from testkit.loss import count, influx_times
from testkit.servers import InfluxDB, need
from tests.support.demo import DemoProcess, alive, demo_command
from tests.support.mqtt import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0


@pytest.fixture
def demo_env(influxdb: InfluxDB) -> dict[str, str]:
    need("mosquitto")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_")}
    env.update(
        PLANT_HISTORIAN_INFLUX_URL=influxdb.v2_url,
        PLANT_HISTORIAN_INFLUX_TOKEN="unused-by-the-proxy",
        PLANT_HISTORIAN_INFLUX_BUCKET=influxdb.db,
        PLANT_HISTORIAN_FLUSH_INTERVAL_S="0.2",
    )
    return env


@pytest.fixture
def running_demo(demo_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[DemoProcess, Path]]:
    state = tmp_path / "demo"
    args = ["--no-view", "--sites", "2", "--speed", "20", "--duration", "600"]
    demo = DemoProcess([*args, "--state-dir", str(state)], demo_env)
    try:
        yield demo, state
    finally:
        if demo.proc.poll() is None:
            demo.proc.send_signal(signal.SIGKILL)  # its children get SIGTERM (PDEATHSIG)
            demo.proc.wait(10)
        print(demo.text()[-5000:])


def test_demo_runs_the_loop_for_two_sites_and_leaves_nothing_running(
    running_demo: tuple[DemoProcess, Path], influxdb: InfluxDB
) -> None:
    demo, state = running_demo
    demo.wait_for(r"^ready: \d+ processes healthy", READY_TIMEOUT_S)
    pids = demo.pids()
    expected = {"mosquitto", "historian"} | {
        f"{service}-{site}"
        for service in ("opcua", "edge", "controller")
        for site in ("site1", "site2")
    }
    assert set(pids) == expected, demo.text()
    assert all(alive(pid) for pid in pids.values())

    # Every service healthy, checked as its compose healthcheck does, with its own password.
    port = int(demo.wait_for(r"mqtt://127\.0\.0\.1:(\d+)", 1).group(1))

    def broker(user: str, site: str) -> Broker:
        password = (state / "secrets" / f"mqtt_{user}_password").read_text()
        return Broker("127.0.0.1", port, user, password, site)

    for site in ("site1", "site2"):
        for service in ("edge", "controller"):
            require_online(broker(service, site), service, 5)
    require_online(broker("historian", "central"), "historian", 5)

    # Telemetry of both sites and events, as the read-only viewer sees them.
    seen_sites: set[str] = set()
    events: list[tuple[str, str, str]] = []
    viewer = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="demo-test-viewer",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    viewer.username_pw_set("viewer", (state / "secrets" / "mqtt_viewer_password").read_text())

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/telemetry"):
            seen_sites.add(decode_batch(bytes(msg.payload)).site)
        else:
            event = decode_event(bytes(msg.payload))
            events.append((event.site, event.kind, event.action))

    viewer.on_message = on_message
    viewer.on_connect = lambda c, u, f, r, p: c.subscribe(
        [("pcmm/v1/+/+/telemetry", 0), ("pcmm/v1/+/events/+", 1)]
    )
    viewer.connect("127.0.0.1", port)
    viewer.loop_start()
    try:
        wait_until(lambda: seen_sites >= {"site1", "site2"}, 30, f"telemetry, got {seen_sites}")

        # The fault command exactly as the demo printed it for site2, from another process.
        command, env = demo_command(demo, "site2")
        assert command[1:4] == ["fault", "inject", "bridging"], command
        injected = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert injected.returncode == 0, injected.stderr
        assert "injected bridging" in injected.stdout
        wait_until(
            lambda: ("site2", "fault", "fault_raised") in events,
            30,
            f"the fault as an MQTT event; events: {events[-10:]}",
        )
    finally:
        viewer.disconnect()
        viewer.loop_stop()
    demo.wait_for(r"^event site2 fault: fault raised bridging", 10)
    wait_until(
        lambda: bool(
            influxdb.query(
                "SELECT \"user\" FROM events WHERE \"action\" = 'inject_fault' AND site = 'site2'"
            )
        ),
        60,
        "the fault in InfluxDB",
    )
    wait_until(
        lambda: bool(
            influxdb.query("SELECT count(\"tablet_weight\") FROM telemetry WHERE site = 'site1'")
        ),
        30,
        "site1 telemetry in InfluxDB",
    )

    # Ctrl-C: everything stops, within the demo's bound, and no child is left.
    began = time.monotonic()
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(40) == 0, demo.text()
    assert time.monotonic() - began < 30
    left = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not left, f"still running after SIGINT: {left}"
    assert f"stopped {len(pids)} processes" in demo.text()
    assert "killed after the stop timeout" not in demo.text()


def found_start(url: str) -> int:
    """The first stored source time of site1 (ns)."""
    rows = query_rows(
        url, "pcmm", "SELECT first(\"tablets_total\") FROM telemetry WHERE site = 'site1'"
    )
    return int(rows[0]["time"])


def test_demo_without_mosquitto_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "apps.cli", "demo", "--no-view", "--duration", "1",
         "--mosquitto", str(tmp_path / "no-such-mosquitto")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "no mosquitto at" in done.stderr


def test_demo_without_historian_starts_neither_it_nor_influxd(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    """`--no-historian` wins over an InfluxDB named in the environment and over a local
    `influxd` (this machine has one): the loop runs without either."""
    args = ["--no-view", "--no-historian", "--speed", "20", "--duration", "600"]
    demo = DemoProcess([*args, "--state-dir", str(tmp_path / "demo")], demo_env)
    try:
        demo.wait_for(r"^ready: \d+ processes healthy", READY_TIMEOUT_S)
        assert set(demo.pids()) == {"mosquitto", "opcua-site1", "edge-site1", "controller-site1"}
        assert demo.wait_for(r"^historian off \(--no-historian\)$", 1)
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(60) == 0, demo.text()[-3000:]
    finally:
        if demo.proc.poll() is None:
            demo.proc.send_signal(signal.SIGKILL)
            demo.proc.wait(10)


def brightness(rgb: float | tuple[int, ...]) -> int:
    """The sum of an RGB colour's channels. `getcolors` is typed for any image mode (a one-band
    image's colour is a number); the screenshot is converted to RGB."""
    assert isinstance(rgb, tuple), rgb
    return sum(rgb)


def test_demo_with_a_local_influxd_stores_every_published_sample_and_reports_the_run(
    tmp_path: Path,
) -> None:
    """No InfluxDB configured: the demo starts the local influxd and the historian into it.

    For a minute of wall time, with a fault injected as the demo says to: every sample the
    edge published is stored (counted by the edge's sequence numbers: the stored ones are
    consecutive from the first, and every one a second subscriber saw published is stored),
    `plant kpi --from-influx` scores the run, and the report written at the stop has every
    section and renders in headless Chromium.
    """
    need("mosquitto")
    need("influxd")
    chromium = need("chromium", "apt-get install -y chromium")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_")}
    state, report = tmp_path / "demo", tmp_path / "run.html"
    args = ["--no-view", "--speed", "20", "--duration", "60", "--state-dir", str(state)]
    demo = DemoProcess([*args, "--report", str(report)], env)
    # site -> seq -> (tag, source time) of every sample a second subscriber saw published
    seen: dict[str, dict[int, tuple[str, int]]] = {}
    counter: mqtt.Client | None = None
    try:
        influx_url = demo.wait_for(r"^influxd pid \d+: (http://\S+)", READY_TIMEOUT_S).group(1)
        port = int(demo.wait_for(r"mqtt://127\.0\.0\.1:(\d+)", 1).group(1))
        # Published samples as a second subscriber sees them (the historian's user may read
        # telemetry and the ground truth; another client id, a plain subscription).
        counter = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="demo-test-counter",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        password = demo.wait_for_secret(state, "mqtt_historian_password")
        counter.username_pw_set("historian", password)

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            batch = decode_batch(bytes(msg.payload))
            seen.setdefault(batch.site, {}).update(
                (s.seq, (s.tag, s.source_ns)) for s in batch.samples
            )

        counter.on_message = on_message
        counter.on_connect = lambda c, u, f, r, p: c.subscribe(
            [("pcmm/v1/+/+/telemetry", 1), ("pcmm/v1/+/simulation/+", 1)]
        )
        counter.connect("127.0.0.1", port)
        counter.loop_start()
        demo.wait_for(r"^ready: \d+ processes healthy", READY_TIMEOUT_S)
        assert "historian pid" in demo.text()
        assert f"curl -sG {influx_url}/query" in demo.text()  # how to query it
        command, fault_env = demo_command(demo, "site1")
        injected = subprocess.run(
            command, env=fault_env, capture_output=True, text=True, timeout=60, check=False
        )
        assert injected.returncode == 0, injected.stderr
        assert demo.proc.wait(240) == 0, demo.text()  # --duration 60, then the stop
    finally:
        if counter is not None:
            counter.disconnect()
            counter.loop_stop()
        if demo.proc.poll() is None:
            demo.proc.send_signal(signal.SIGKILL)
            demo.proc.wait(10)
        print(demo.text()[-5000:])
    assert "historian drained: everything sent is stored" in demo.text()
    assert f"report: {report}" in demo.text(), demo.text()
    assert "killed after the stop timeout" not in demo.text()
    # Each controller action once, from the controller's own record, with its outcome: the
    # plant's record of the same command ("controller via edge") is not shown beside it.
    actions = [line for line in demo.lines if line.startswith("event site1 audit: controller ")]
    assert actions and all("(accepted)" in a or "REFUSED" in a or "NO REPLY" in a for a in actions)
    assert "controller via edge" not in demo.text()

    # The data outlives the demo (--state-dir): start influxd on it again, as the demo does.
    local = LocalInflux(state / "influxdb", port=free_port(), rpc_port=free_port())
    local.write_config()
    server = local.child(Path(need("influxd")), env, tmp_path / "influxd-again.log")
    server.start()
    try:
        wait_for_influx(server, local.url, 30)
        found = completeness(Source(local.url, "pcmm", "site1"))
        scored = subprocess.run(
            [sys.executable, "-m", "apps.cli", "kpi", "--from-influx", "--url", local.url,
             "--db", "pcmm", "--site", "site1", "--json"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        # `plant report` over a part of the run: the first five minutes of its source times.
        begin = datetime.fromtimestamp(found_start(local.url) / 1e9, UTC)
        part = tmp_path / "part.html"
        reported = subprocess.run(
            [sys.executable, "-m", "apps.cli", "report", "--url", local.url, "--db", "pcmm",
             "--site", "site1", "--from", begin.isoformat(),
             "--to", (begin + timedelta(minutes=5)).isoformat(), "-o", str(part)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        stop_all([server], 10)
    assert reported.returncode == 0, reported.stderr
    stamp = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
    shown = re.search(rf"{stamp} to {stamp} UTC \(plant source times\)", part.read_text())
    assert shown, part.read_text()[:600]
    first, last = (datetime.fromisoformat(f"{t}+00:00") for t in shown.groups())
    assert first == begin.replace(microsecond=0)
    assert (
        begin + timedelta(minutes=5) - timedelta(seconds=5) <= last <= begin + timedelta(minutes=5)
    )
    published = seen.get("site1", {})
    print(
        f"site1: {found.unique} samples stored, sequence numbers {found.first_seq}.."
        f"{found.last_seq}; {len(published)} seen published by a second subscriber"
    )
    assert found.first_seq == 1  # the edge's first sample (bridge/edge/sequence.py) ...
    # ... and every one after it, to the last, but where the edge republished a tag at the
    # same source time (a status-only change): InfluxDB keeps one point per tag and time, the
    # later one, so the earlier one's number is overwritten, not lost (testkit/loss.py; a CI
    # run stored 41,320 of 41,322 numbers, each of its two gaps a single number).
    missing = [seq for first, last in found.gaps for seq in range(first, last + 1)]
    at_time: dict[tuple[str, int], list[int]] = {}
    for seq, sample in published.items():
        at_time.setdefault(sample, []).append(seq)
    unexplained = [
        (seq, published.get(seq))
        for seq in missing
        if seq not in published or max(at_time[published[seq]]) == seq
    ]
    assert found.lost == len(missing) and not unexplained, unexplained[:20]
    assert found.duplicates == 0
    assert found.last_seq is not None and published  # all it saw published, in the count
    assert published.keys() <= set(range(1, found.last_seq + 1))
    assert found.unique > 10_000  # a minute at x20: about 1,200 plant s of every tag
    assert scored.returncode == 0, scored.stderr
    scores = json.loads(scored.stdout)
    assert scores["samples_stored"] == found.unique and scores["samples_lost"] == found.lost
    assert scores["tablets_made"] > 0 and scores["controller_actions"] >= 1
    assert any(k.startswith("bridging@") for k in scores["detection_delay_s"]), scores

    # The report: every section, and Chromium renders it to something that is not blank.
    page = report.read_text()
    for key, title in SECTIONS:
        assert f'<section id="{key}"><h2>{html.escape(title)}</h2>' in page
    assert page.count("<svg") >= 5 and "<script" not in page
    assert "bridging" in page and "controller" in page
    shot = tmp_path / "run.png"
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", f"--screenshot={shot}",
         "--window-size=1400,2000", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = image.convert("RGB").resize((140, 200))
        colours = pixels.getcolors(140 * 200) or []
    inked = sum(count for count, rgb in colours if brightness(rgb) < 600)  # not white nor near it
    assert len(colours) > 20 and inked > 140 * 200 * 0.03, (len(colours), inked)
    print(f"screenshot: {shot}")


def test_demo_central_tier_stores_both_sites_through_the_centre(tmp_path: Path) -> None:
    """`--sites 2 --central`: each site's edge and controller on its own broker, bridged to a
    central broker on which two historians share one subscription into the local influxd.

    The live view reads the centre: a fault injected at site2 as the demo says shows as its
    event. At the stop the demo drains both historians through the bridges; then InfluxDB
    holds every sample a subscriber at each site's own broker saw its edge publish (per tag
    and source time, testkit/loss.py; from the edge's first sample on), none twice, both
    historians wrote (their own reports), and only the bridges and the central services
    logged in at the centre (the edges at their own brokers). The count is by source time,
    not by the edge's sequence numbers: a sample republished at the same source time (a
    status change) overwrites its stored number, so a gap in them is not a loss.
    """
    need("mosquitto")
    need("influxd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_")}
    state = tmp_path / "demo"
    args = ["--no-view", "--sites", "2", "--central", "--speed", "20", "--duration", "40"]
    demo = DemoProcess([*args, "--state-dir", str(state)], env)
    published: dict[str, dict[str, set[int]]] = {"site1": {}, "site2": {}}
    counters: list[mqtt.Client] = []

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        batch = decode_batch(bytes(msg.payload))
        for sample in batch.samples:
            published[batch.site].setdefault(sample.tag, set()).add(sample.source_ns)

    try:
        # Subscribers at the site brokers (the historian's account there), before any edge.
        password = demo.wait_for_secret(state, "mqtt_historian_password")
        for site in ("site1", "site2"):
            port = int(
                demo.wait_for(rf"^mosquitto-{site} pid \d+: mqtt://127\.0\.0\.1:(\d+)", 60)[1]
            )
            counter = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=f"demo-test-counter-{site}",
                protocol=MQTTProtocolVersion.MQTTv5,
            )
            counter.username_pw_set("historian", password)
            counter.on_message = on_message
            counter.on_connect = lambda c, u, f, r, p: c.subscribe(
                [("pcmm/v1/+/+/telemetry", 1), ("pcmm/v1/+/simulation/+", 1)]
            )
            counter.connect("127.0.0.1", port)
            counter.loop_start()
            counters.append(counter)
        demo.wait_for(r"^ready: \d+ processes healthy", READY_TIMEOUT_S)
        expected = {"mosquitto-central", "historian-1", "historian-2", "influxd"} | {
            f"{service}-{site}"
            for service in ("mosquitto", "opcua", "edge", "controller")
            for site in ("site1", "site2")
        }
        assert set(demo.pids()) == expected, demo.text()
        command, fault_env = demo_command(demo, "site2")
        injected = subprocess.run(
            command, env=fault_env, capture_output=True, text=True, timeout=60, check=False
        )
        assert injected.returncode == 0, injected.stderr
        demo.wait_for(r"^event site2 fault: fault raised bridging", 30)
        assert demo.proc.wait(240) == 0, demo.text()
    finally:
        for counter in counters:
            counter.disconnect()
            counter.loop_stop()
        if demo.proc.poll() is None:
            demo.proc.send_signal(signal.SIGKILL)
            demo.proc.wait(10)
        print(demo.text()[-5000:])
    assert "historian drained: everything sent is stored" in demo.text()
    assert "killed after the stop timeout" not in demo.text()

    central_log = (state / "logs" / "mosquitto-central.log").read_text()
    clients = set(re.findall(r"New (?:client|bridge) connected from \S+ as (\S+)", central_log))
    assert {"bridge-site1", "bridge-site2", "historian-1", "historian-2"} <= clients, clients
    assert not {c for c in clients if c.startswith(("edge", "controller"))}, clients
    for site in ("site1", "site2"):
        site_log = (state / "logs" / f"mosquitto-{site}.log").read_text()
        assert f"as edge-{site}" in site_log

    local = LocalInflux(state / "influxdb", port=free_port(), rpc_port=free_port())
    local.write_config()
    server = local.child(Path(need("influxd")), env, tmp_path / "influxd-again.log")
    server.start()
    try:
        wait_for_influx(server, local.url, 30)
        found = {site: completeness(Source(local.url, "pcmm", site)) for site in ("site1", "site2")}
        stored = {site: influx_times(InfluxDB(local), site) for site in ("site1", "site2")}
        reports = query_rows(
            local.url,
            "pcmm",
            'SELECT max("written") FROM "pipeline" WHERE "service" = \'historian\' '
            'GROUP BY "instance"',
        )
    finally:
        stop_all([server], 10)
    for site, seqs in found.items():
        tally = count(published[site], stored[site])
        print(f"{site}: seq {seqs.first_seq}..{seqs.last_seq}; published against stored: {tally}")
        assert seqs.first_seq == 1, site  # the edge's first sample ...
        assert tally.expected > 5_000, site  # 40 s at x20: about 800 plant s of every tag
        assert tally.lost == 0 and tally.duplicates == 0, (site, str(tally))  # ... and all after
    written = {row["instance"]: row["max"] for row in reports}
    assert written.get("historian-1", 0) > 0 and written.get("historian-2", 0) > 0, written
