"""The audit trail cannot be rewritten: Mosquitto's ACL, the historian's write-once identity in
InfluxDB, and `plant audit verify` finding what was changed in InfluxDB behind their backs.

Real Mosquitto (deploy/mosquitto/acl), the historian as a process, InfluxDB 1.6.7.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace

import pytest

from bridge.historian.points import convert
from core import topics
from core.audit_chain import AuditChain
from core.payload import Event, encode_event
from testkit.historian import plant_executable
from testkit.servers import InfluxDB, Mosquitto
from tests.integration.test_historian import StartHistorian, start_historian
from tests.support.mqtt import client, collect, publish_and_wait, wait_until
from tests.support.payloads import T0, site_id

pytestmark = pytest.mark.integration
__all__ = ["start_historian"]
SETTLE_S = 1.0  # after a later good record arrived, time for a wrongly stored one to show


def twin_records(site: str, n: int, log: str = "twinlog") -> list[Event]:
    chain = AuditChain(log)
    return [
        chain.seal(
            Event(
                site,
                "audit",
                seq,
                T0 + seq * 1_000_000_000,
                "twin",
                user="alice via edge",
                action="write",
                target="press.fill_depth_sp",
                old=9.5,
                new=10.0 + seq,
                reason="campaign 7",
                accepted=False,
                result="range: refused",
            )
        )
        for seq in range(1, n + 1)
    ]


def stored(influx: InfluxDB, site: str) -> list[dict[str, object]]:
    where = f"\"kind\"='audit' AND \"site\"='{site}' AND \"source\"='twin'"
    return influx.query(f'SELECT * FROM "events" WHERE {where}')


def verify(influx: InfluxDB, site: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            plant_executable(),
            "audit",
            "verify",
            "--site",
            site,
            "--source",
            "twin",
            "--url",
            influx.url,
            "--db",
            influx.db,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def line_of(event: Event) -> str:
    (line,) = convert(topics.SiteTopics(event.site).audit(event.source), encode_event(event))
    return line.decode()


def test_forged_replayed_edited_and_deleted_records_never_pass_unseen(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    site = site_id()
    t = topics.SiteTopics(site)
    start_historian()
    dead = collect(mosquitto, "operator", topics.deadletter("historian"))
    edge, controller = client(mosquitto, "edge"), client(mosquitto, "controller")
    records = twin_records(site, 5)
    for event in records:
        publish_and_wait(edge, t.audit("twin"), encode_event(event))
    wait_until(lambda: len(stored(influxdb, site)) == 5, 20, "the twin's five records")
    intact = verify(influxdb, site)
    assert intact.returncode == 0, intact.stderr
    assert f"audit trail of {site}/twin intact: 5 records in 1 log(s), seq 1..5" in intact.stdout

    # The controller forges seq 3 of the twin: "a refused write became accepted, approved by QA".
    forged = AuditChain("twinlog").seal(
        replace(records[2], accepted=True, result="accepted, approved by QA", hash="", prev_hash="")
    )
    publish_and_wait(controller, t.audit("twin"), encode_event(forged))  # the ACL drops it
    publish_and_wait(controller, t.audit("controller"), encode_event(forged))  # source: twin
    wait_until(lambda: any(site in p.decode() for p in dead.payloads()), 20, "a dead letter")
    (letter,) = [json.loads(p) for p in dead.payloads() if site in p.decode()]
    assert letter["topic"] == t.audit("controller")
    assert "audit record of 'twin' on the topic of controller" in letter["reason"]
    # The edge replays seq 3 (idempotent) and, as a buggy or hostile edge, rewrites it.
    publish_and_wait(edge, t.audit("twin"), encode_event(records[2]))
    publish_and_wait(edge, t.audit("twin"), encode_event(forged))
    wait_until(lambda: len(stored(influxdb, site)) == 6, 20, "the rewrite beside the original")
    time.sleep(SETTLE_S)
    rows = stored(influxdb, site)
    third = sorted((row for row in rows if row["seq"] == 3), key=lambda r: str(r["result"]))
    assert [(r["result"], r["accepted"]) for r in third] == [
        ("accepted, approved by QA", True),
        ("range: refused", False),  # the original, not overwritten
    ]
    assert all(r["source"] == "twin" for r in rows)
    overwritten = verify(influxdb, site)
    assert overwritten.returncode == 1
    assert "seq 3: stored twice" in overwritten.stderr
    assert len(overwritten.stderr.strip().splitlines()) == 1

    # Clean up the rewrite with InfluxDB's own API, then edit and delete behind the pipeline.
    influxdb.query(f'DELETE FROM "events" WHERE "hash"=\'{forged.hash}\'', post=True)
    assert verify(influxdb, site).returncode == 0
    genuine = line_of(records[1])  # the edit keeps the series (its hash tag) and the time
    influxdb.write(genuine.replace('result="range: refused"', 'result="approved by QA"'))
    broken = verify(influxdb, site)
    assert broken.returncode == 1
    assert "broken at log twinlog, seq 2: its fields do not give its hash" in broken.stderr
    influxdb.write(genuine)  # restored
    assert verify(influxdb, site).returncode == 0
    influxdb.query(f'DELETE FROM "events" WHERE "hash"=\'{records[3].hash}\'', post=True)
    gap = verify(influxdb, site)
    assert gap.returncode == 1
    assert "seq 4 missing (seq 3 is followed by 5)" in gap.stderr
    for c in (edge, controller, dead.client):
        c.disconnect()


def test_verify_says_when_there_is_nothing_to_verify(influxdb: InfluxDB) -> None:
    empty = verify(influxdb, site_id())
    assert empty.returncode == 1 and "no records stored" in empty.stderr
    unreachable = subprocess.run(
        [
            plant_executable(),
            "audit",
            "verify",
            "--site",
            "s",
            "--url",
            "http://127.0.0.1:9",
            "--db",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 2
    assert unreachable.stderr.startswith("error: cannot read InfluxDB")
    assert "Traceback" not in unreachable.stderr
