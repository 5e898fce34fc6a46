"""The twin's audit trail through the edge without a gap: records made while no edge listened.

OPC UA events are not historized, so the edge reads the records it missed with the server's
`AuditSince` method after every (re)connection. Everything is real: the twin's OPC UA server
(in-process, 10x), `python -m bridge.edge` and the historian as child processes, Mosquitto
and InfluxDB 1.x. Records are made before the edge first starts (more than one page), while
it runs, while it is SIGKILLed, and while it starts again; MQTT and InfluxDB must then hold
seq 1..N, each record once, with the twin's own times.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from apps.stored import faults
from core.commands import SetpointCommand
from core.faults import FaultSpec
from core.payload import decode_event
from core.timebase import to_ns
from core.topics import SiteTopics
from testkit.historian import HistorianProcess, historian_env, plant_executable
from testkit.servers import InfluxDB, Mosquitto
from tests.support.mqtt import Collector, collect, wait_until

from .conftest import RunningServer
from .edge_harness import SITE, EdgeProcess, edge_env, opcua_with_edge_user

pytestmark = pytest.mark.integration

BEFORE = 1200  # more than two AuditSince pages (500)
WHILE_DOWN = 300
CHUNK = 50


def make_records(running: RunningServer, n: int, why: str) -> int:
    """`n` setpoint writes (every 7th refused: out of range), audited; the trail's length.

    At most CHUNK at one plant time: the historian tells events of the same timestamp apart
    by seq modulo 64 (`bridge.historian.points.EVENT_SLOTS`), plenty for a plant, not for a
    test that writes a thousand setpoints in one instant.
    """

    async def write(start: int, count: int) -> int:
        for i in range(start, start + count):
            value = 9999.0 if i % 7 == 6 else 240.0 + i % 20
            running.plant.apply(
                SetpointCommand("blender.speed_sp", value, user="tester", reason=f"{why} {i}")
            )
        return len(running.plant.audit)

    length = 0
    for start in range(0, n, CHUNK):
        if start:
            now = running.plant.now

            def ticked(now: float = now) -> bool:
                return running.plant.now > now

            wait_until(ticked, 10, "the next tick")

        async def chunk(start: int = start) -> int:
            return await write(start, min(CHUNK, n - start))

        length = running.run(chunk)
    return length


def mqtt_seqs(audit: Collector) -> list[int]:
    events = [decode_event(p) for p in audit.payloads()]
    return [e.seq for e in events if e.source == "twin"]


def has_all(audit: Collector, n: int) -> bool:
    return set(range(1, n + 1)) <= set(mqtt_seqs(audit))


def test_audit_records_made_while_no_edge_listened_arrive_once_without_a_gap(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    with opcua_with_edge_user(tmp_path) as running:
        historian = HistorianProcess(
            historian_env(mosquitto, influxdb, tmp_path, "historian-audit", FLUSH_INTERVAL_S=0.1),
            tmp_path / "historian.log",
        )
        historian.start()
        historian.wait_online()
        audit = collect(mosquitto, "operator", SiteTopics(SITE).audit("twin"))
        edge = EdgeProcess(edge_env(running, mosquitto, tmp_path), tmp_path / "edge.log")
        try:
            # 1. Before the edge first connects: only AuditSince can bring these.
            n = make_records(running, BEFORE, "before the edge")
            edge.start()
            wait_until(lambda: has_all(audit, n), 60, f"audit seq 1..{n} on MQTT", step=0.5)
            # Live, through the events; then let the broker's PUBACKs reach the outbox.
            n = make_records(running, 5, "live")
            wait_until(lambda: has_all(audit, n), 20, f"audit seq 1..{n} on MQTT", step=0.2)
            time.sleep(1.0)
            assert Counter(mqtt_seqs(audit)).most_common(1)[0][1] == 1, "a record sent twice"
            first = len(mqtt_seqs(audit))

            # 2. While the edge is dead, and while it starts again (live and backfill race).
            edge.kill()
            n = make_records(running, WHILE_DOWN, "edge down")
            edge.start()
            for i in range(20):
                n = make_records(running, 1, f"edge starting {i}")
                time.sleep(0.1)
            wait_until(lambda: has_all(audit, n), 60, f"audit seq 1..{n} on MQTT", step=0.5)
            n = make_records(running, 3, "after")
            wait_until(lambda: has_all(audit, n), 20, f"audit seq 1..{n} on MQTT", step=0.2)

            # MQTT: every record; the ones forwarded before the kill were not sent again.
            seqs = mqtt_seqs(audit)
            assert sorted(set(seqs)) == list(range(1, n + 1))
            again = [s for s in seqs[first:] if s <= BEFORE + 5]
            assert not again, f"records forwarded before the kill sent again: {again[:10]}"

            # InfluxDB: seq 1..N, once each, at the twin's own times.
            query = f"SELECT * FROM events WHERE site = '{SITE}' AND kind = 'audit'"

            def stored() -> list[dict[str, object]]:
                return [r for r in influxdb.query(query) if r["source"] == "twin"]

            wait_until(lambda: len(stored()) >= n, 30, f"{n} audit points", step=0.5)
            rows = stored()
            assert sorted(int(str(r["seq"])) for r in rows) == list(range(1, n + 1))
            clock = running.server.clock
            truth = {r.seq: (to_ns(clock.utc(r.time)), r.reason) for r in running.audit()}
            assert {int(str(r["seq"])): (r["time"], r["reason"]) for r in rows} == truth
            # ... with the twin's own hashes, chained as the twin made them.
            hashes = {r.seq: r.hash for r in running.audit()}
            assert {int(str(r["seq"])): r["hash"] for r in rows} == hashes
            check = subprocess.run(
                [
                    plant_executable(),
                    "audit",
                    "verify",
                    "--site",
                    SITE,
                    "--url",
                    influxdb.url,
                    "--db",
                    influxdb.db,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert check.returncode == 0, check.stderr
            assert f"intact: {n} records in 1 log(s), seq 1..{n}" in check.stdout

            log = edge.text()
            backfills = [int(m) for m in re.findall(r"backfilled (\d+) audit records", log)]
            assert backfills[0] == BEFORE, log[-3000:]
            assert len(backfills) == 2 and backfills[1] >= WHILE_DOWN, log[-3000:]
        finally:
            edge.kill()
            historian.kill()
            audit.client.disconnect()
            print(edge.text()[-4000:])


def test_fault_events_fired_while_no_edge_listened_are_stored_once(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    """The simulation's fault events (what the scoring reads) come back by FaultsSince: a fault
    raised and cleared while the edge was dead is stored, and none twice."""
    with opcua_with_edge_user(tmp_path) as running:
        historian = HistorianProcess(
            historian_env(mosquitto, influxdb, tmp_path, "historian-faults", FLUSH_INTERVAL_S=0.1),
            tmp_path / "historian.log",
        )
        historian.start()
        historian.wait_online()
        edge = EdgeProcess(edge_env(running, mosquitto, tmp_path), tmp_path / "edge.log")
        query = f"SELECT * FROM events WHERE site = '{SITE}' AND kind = 'fault'"
        alarms = running.server._alarms  # the server's own record of its fault events
        assert alarms is not None

        def inject(kind: str, duration_s: float) -> None:
            async def go() -> None:
                spec = FaultSpec(kind, duration_s=duration_s, onset_s=running.plant.now, user="t")
                assert running.plant.inject(spec).accepted

            running.run(go)

        def fired() -> int:
            return alarms.last_seq

        try:
            inject("punch_wear", 20.0)  # before the edge first connects
            wait_until(lambda: fired() == 2, 30, "raised and cleared before the edge")
            edge.start()
            wait_until(lambda: len(influxdb.query(query)) >= 2, 60, "the two backfilled")
            inject("nir_bias", 20.0)  # live
            wait_until(lambda: len(influxdb.query(query)) >= 4, 30, "the two live ones")
            edge.kill()
            inject("bridging", 20.0)  # while the edge is dead
            wait_until(lambda: fired() == 6, 30, "raised and cleared while the edge is dead")
            edge.start()
            wait_until(lambda: len(influxdb.query(query)) >= 6, 60, "the two after the restart")
            time.sleep(1.0)  # anything sent twice would be stored by now

            rows = influxdb.query(query)
            clock = running.server.clock
            truth = {
                seq: (to_ns(datetime.fromisoformat(r["Time"])), f"fault_{r['FaultState']}")
                for seq, r in alarms.records
            }
            stored = {int(str(r["seq"])): (r["time"], r["action"]) for r in rows}
            assert len(rows) == 6 and stored == truth, (rows, truth)
            scored = [(f.kind, f.ended_s is not None) for f in faults(rows)]
            assert scored == [("punch_wear", True), ("nir_bias", True), ("bridging", True)]
            assert clock.utc(0) <= datetime.fromisoformat(str(alarms.records[0][1]["Time"]))
            backfills = re.findall(r"backfilled (\d+) fault events", edge.text())
            assert backfills == ["2", "2"], edge.text()[-3000:]
        finally:
            edge.kill()
            historian.kill()
