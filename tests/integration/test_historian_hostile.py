"""Hostile input never stops the historian, and no good sample is lost because of it.

Every kind of bad message a buggy or hostile client with the edge's credentials can publish
(numbers of hundreds of digits, deep nesting, NaN and Infinity, duplicate keys, invalid
UTF-8, a lone surrogate, a trailing newline in a tag value, a time InfluxDB cannot store, a
message of almost the broker's packet limit, the fuzz test's garbage), and a line that only
InfluxDB can refuse (a field type conflict), interleaved with good telemetry and events. The
historian runs as a process against the real broker and InfluxDB, through the v2 proxy in
2.x mode (a batch with one bad line is refused whole). Afterwards: the historian is alive and
`plant health historian` says healthy, every good sample is in InfluxDB (counted), and every
bad message is in the dead-letter store whole, with its reason, and was announced on
`pcmm/v1/deadletter/historian`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from bridge.deadletter import DeadLetter, read_deadletters
from bridge.historian.points import convert
from bridge.historian.settings import HistorianSettings
from bridge.metrics import Metrics, encode_metrics
from core import topics
from core.payload import PayloadError
from testkit.historian import HistorianProcess, historian_env, plant_executable
from testkit.servers import InfluxDB, Mosquitto
from tests.integration.test_historian import StartHistorian, health, start_historian, telemetry_seqs
from tests.integration.test_historian_fuzz import burst
from tests.support.children import env_of
from tests.support.mqtt import client, collect, publish_and_wait, wait_until
from tests.support.payloads import T0, event_payload, feeder_payload, site_id

pytestmark = pytest.mark.integration
__all__ = ["start_historian"]

HUGE = "9" * 400
DEEP = "[" * 50_000 + "]" * 50_000
FAR = T0 + 400 * 86_400 * 10**9  # another shard of InfluxDB: field types are per shard


def _raw(payload: bytes, key: str, raw: str, *, where: Callable[[Any], Any] = lambda o: o) -> bytes:
    """`payload` with the value of `key` (in the object `where` picks) replaced by raw text."""
    obj = json.loads(payload)
    where(obj)[key] = "@@RAW@@"
    return json.dumps(obj, separators=(",", ":")).replace('"@@RAW@@"', raw, 1).encode()


def _sample(obj: Any) -> Any:
    return obj["samples"][0]


def hostile(site: str) -> list[tuple[str, str, bytes]]:
    """(kind, topic, payload) of every bad message, each one different."""
    t = topics.SiteTopics(site)
    tele, audit, metrics = t.telemetry("api_feeder"), t.audit("twin"), t.metrics("edge")
    feeder = feeder_payload(site, 900)
    event = event_payload(site, 900, T0 + 900, user="mallory", old=1.5)
    report = encode_metrics(Metrics("edge", site, "edge-1", T0, {"received": 1.0}))
    messages = [
        ("hundreds of digits in a value", tele, _raw(feeder, "value", HUGE, where=_sample)),
        ("hundreds of digits in a seq", audit, _raw(event, "seq", HUGE)),
        ("hundreds of digits in a metric", metrics, _raw(report, "received", HUGE,
                                                          where=lambda o: o["values"])),
        ("5000 digits", tele, _raw(feeder, "source_ns", "1" * 5000, where=_sample)),
        ("a float of 400 digits", tele, _raw(feeder, "value", HUGE + ".5", where=_sample)),
        ("1e400", metrics, _raw(report, "received", "1e400", where=lambda o: o["values"])),
        ("NaN", tele, _raw(feeder, "value", "NaN", where=_sample)),
        ("Infinity", metrics, _raw(report, "received", "Infinity", where=lambda o: o["values"])),
        ("-Infinity", audit, _raw(event, "old", "-Infinity")),
        ("deep nesting", tele, _raw(feeder, "samples", DEEP)),
        ("deep objects", audit, _raw(event, "new", '{"a":' * 20_000 + "1" + "}" * 20_000)),
        ("a duplicate key", tele, feeder.replace(b'"v":1,', b'"v":1,"v":1,', 1)),
        ("a duplicate site", audit, event.replace(b'"site":', b'"site":"elsewhere","site":', 1)),
        ("invalid UTF-8", audit, event.replace(b'"mallory"', b'"mall\xffory"')),
        ("a lone surrogate", audit, event.replace(b'"mallory"', b'"\\ud800mallory"')),
        ("a trailing newline in a tag", audit, event.replace(b'"twin"', b'"twin\\n"')),
        ("a newline splitting a line", audit, event.replace(b'"twin"', b'"twin\\nx=1 2"')),
        ("a trailing newline in an instance", metrics,
         report.replace(b'"edge-1"', b'"edge-1\\n"')),
        ("a trailing newline in a metric name", metrics,
         report.replace(b'"received"', b'"received\\n"')),
        ("time_ns = 2**63-1", audit, _raw(event, "time_ns", str(2**63 - 1))),
        ("source_ns = 2**63-1", tele, _raw(feeder, "source_ns", str(2**63 - 1), where=_sample)),
        # Just under the broker's 1 MiB packet: whole in the store; its announcement, twice
        # as large once escaped, is cut to fit.
        ("a huge message", audit, _raw(event, "reason", json.dumps('"' * 500_000))),
    ]  # fmt: skip
    for i, (topic, payload) in enumerate(burst(60, site)):  # the fuzz test's, the bad ones
        try:
            convert(topic, payload)
        except PayloadError:
            messages.append((f"fuzz {i}", topic, payload))
    return messages


def test_no_message_stops_the_historian_or_loses_a_good_one(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    site = site_id("hostile")
    proxy = influxdb.proxy
    assert proxy is not None
    proxy.whole_batch = True
    # A line only InfluxDB can refuse: `old` is an integer in the shard of FAR (written through
    # the proxy's scratch database too, so that 2.x mode refuses its batch whole).
    conflict = f"events,kind=audit,site={site},slot=0,source=twin old=1i {FAR}"
    proxy.mirror(conflict)
    influxdb.write(conflict)
    historian = start_historian(FLUSH_INTERVAL_S=0.5)
    announced = collect(mosquitto, "operator", topics.deadletter("historian"))
    edge = client(mosquitto, "edge")
    t = topics.SiteTopics(site)

    bad = hostile(site)
    kinds = {kind: (topic, payload) for kind, topic, payload in bad}
    assert len(kinds) == len(bad) > 40
    for topic, payload in kinds.values():
        with pytest.raises(PayloadError):
            convert(topic, payload)
    refused_by_influx = event_payload(site, 64, FAR, user="u", old="text")  # old: a string
    good_batches, good_events = 0, 0

    def good() -> None:
        nonlocal good_batches, good_events
        for _ in range(3):
            publish_and_wait(edge, t.telemetry("api_feeder"), feeder_payload(site, good_batches))
            good_batches += 1
        publish_and_wait(edge, t.audit("twin"), event_payload(site, good_events, T0 + good_events))
        good_events += 1

    for i, (_, topic, payload) in enumerate(bad):
        good()
        publish_and_wait(edge, topic, payload)
        if i == len(bad) // 2:
            publish_and_wait(edge, t.audit("twin"), refused_by_influx)
    good()

    # Every good sample and event is in InfluxDB.
    wait_until(
        lambda: telemetry_seqs(influxdb, site) == list(range(good_batches * 5)),
        60,
        f"{good_batches * 5} good samples",
    )
    where = f"\"site\"='{site}' AND time < {FAR}"
    events = influxdb.query(f'SELECT "seq" FROM "events" WHERE {where}')
    assert sorted(row["seq"] for row in events) == list(range(good_events))

    # Every bad message is in the dead-letter store, whole, with its reason.
    store = HistorianSettings(
        spool_path=Path(env_of(historian)["PLANT_HISTORIAN_SPOOL_PATH"])
    ).deadletters

    def letters() -> list[DeadLetter]:
        return read_deadletters(store) if store.exists() else []

    wait_until(lambda: len(letters()) >= len(bad) + 1, 30, "every dead letter in the store")
    kept = letters()
    by_payload = {letter.payload: letter for letter in kept}
    for kind, topic, payload in bad:
        letter = by_payload.get(payload)
        assert letter is not None, f"{kind}: not in the dead letters"
        assert (letter.topic, letter.service) == (topic, "historian"), kind
        assert letter.reason, kind
    huge = by_payload[kinds["a huge message"][1]]
    assert len(huge.payload) > 1_000_000 and "16384" in huge.reason  # whole, not cut at 64 KiB

    # `plant bridge deadletters` prints them whole, with the historian's own settings.
    done = subprocess.run(
        [plant_executable(), "bridge", "deadletters"],
        env=historian.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [letter["id"] for letter in printed] == [letter.id for letter in kept]
    assert not any(letter["truncated"] for letter in printed)
    (whole,) = [letter for letter in printed if letter["id"] == huge.id]
    assert whole["payload"].encode() == huge.payload

    # The line InfluxDB refused: only it is dead-lettered, from a batch refused whole.
    (line,) = [letter for letter in kept if letter.topic == "influxdb"]
    assert line.payload.startswith(b"events,hash=")
    assert f",kind=audit,log=testlog,site={site},source=twin ".encode() in line.payload
    assert line.payload.endswith(f" {FAR}".encode()) and b"\n" not in line.payload
    assert "field type conflict" in line.reason and line.reason.startswith("HTTP 400")
    assert max(proxy.refused) > 1  # a batch with good lines was refused, split, and written

    # Each letter was announced, whole unless it could not fit in one packet.
    def announcements() -> dict[int, dict[str, Any]]:
        return {letter["id"]: letter for letter in map(json.loads, announced.payloads())}

    wait_until(lambda: len(announcements()) >= len(kept), 30, "every dead letter announced")
    for letter in kept:
        note = announcements()[letter.id]
        assert (note["reason"], note["topic"], note["bytes"]) == (
            letter.reason[:1000],
            letter.topic,
            len(letter.payload),
        )
        if note["truncated"]:
            assert letter is huge
        elif "payload" in note:
            assert note["payload"].encode() == letter.payload
    assert announcements()[huge.id]["truncated"] is True

    # Alive, healthy, and counting what it refused.
    assert historian.running
    checked = health(historian)
    assert checked.returncode == 0, checked.stderr
    hist_site = env_of(historian)["PLANT_HISTORIAN_SITE_ID"]

    def counted() -> dict[str, float]:
        rows = influxdb.query(
            'SELECT last("invalid") AS invalid, last("rejected") AS rejected, '
            'last("deadletters_waiting") AS waiting, last("splits") AS splits '
            f'FROM "pipeline" WHERE "site"=\'{hist_site}\''
        )
        return rows[0] if rows else {}

    wait_until(
        lambda: counted().get("invalid") == len(bad) and counted().get("waiting") == 0,
        30,
        "the self-metrics",
    )
    assert counted()["rejected"] == 1 and counted()["splits"] >= 1
    # And it still ingests.
    publish_and_wait(edge, t.telemetry("api_feeder"), feeder_payload(site, good_batches))
    wait_until(
        lambda: len(telemetry_seqs(influxdb, site)) == (good_batches + 1) * 5, 20, "one more"
    )
    edge.disconnect()


def test_a_full_disk_stops_the_historian_with_one_line_and_loses_nothing(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """The spool on a full disk (a 400 KiB tmpfs): the historian exits 2 with one line, and
    what it could not commit was never acknowledged. Restarted on its files with room (as a
    container with its volume), it stores every batch."""
    # A private mount namespace (no privileges: a user namespace) with a tmpfs on /mnt; when
    # the historian has exited, its files are copied out, as its volume would outlive it.
    unshare = [
        *("unshare", "--user", "--map-root-user", "--mount", "sh", "-c"),
        'mount -t tmpfs -o size=400k tmpfs /mnt && { "$@"; code=$?; cp -a /mnt/. "$OUT"; '
        "exit $code; }",
        "sh",
    ]
    probe = subprocess.run([*unshare, "true"], capture_output=True, timeout=30, check=False,
                           env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"})  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged mount namespace here: {probe.stderr.decode().strip()}")
    site = site_id("full")
    cid = site_id("historian")
    env = historian_env(
        mosquitto, influxdb, tmp_path, cid, SPOOL_PATH="/mnt/spool.sqlite", METRICS_PERIOD_S=60
    )
    env["OUT"] = str(tmp_path / "volume")
    (tmp_path / "volume").mkdir()
    status = collect(mosquitto, "operator", f"pcmm/v1/hist-{cid}/status/historian")
    full = HistorianProcess(env, tmp_path / "full.log", prefix=unshare)
    full.start()
    assert full.proc is not None
    edge = client(mosquitto, "edge")
    topic = topics.SiteTopics(site).telemetry("api_feeder")
    try:
        wait_until(lambda: b"online" in status.payloads(), 20, "the historian online")
        infos: list[mqtt.MQTTMessageInfo] = []
        while full.running and len(infos) < 3000:  # about 1000 fill 400 KiB
            infos.append(edge.publish(topic, feeder_payload(site, len(infos)), qos=1))
            if len(infos) % 50 == 0:
                infos[-1].wait_for_publish(timeout=10)
        assert full.proc.wait(timeout=60) == 2
        for info in infos:  # the broker has every batch: stored or queued for the historian
            info.wait_for_publish(timeout=10)
    finally:
        full.kill()
    sent = len(infos)
    text = full.text()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    assert "the disk is full" in errors[0] and "free space in /mnt and restart" in errors[0]
    assert "Traceback" not in text
    kept = tmp_path / "volume" / "spool.sqlite"
    assert kept.exists()
    roomy = HistorianProcess(
        historian_env(mosquitto, influxdb, tmp_path, cid, SPOOL_PATH=kept, METRICS_PERIOD_S=60),
        tmp_path / "roomy.log",
    )
    roomy.start()
    try:
        wait_until(
            lambda: len(telemetry_seqs(influxdb, site)) >= sent * 5, 90, f"the {sent} batches"
        )
        assert telemetry_seqs(influxdb, site) == list(range(sent * 5))
    finally:
        roomy.kill()
        edge.disconnect()
