"""The historian end to end: edge user -> Mosquitto -> `plant bridge historian` -> InfluxDB.

Real broker with the deployed ACL, real influxd 1.x behind the test-only v2 write proxy, the
historian as a real process. Each test has its own site id and its own historian client id.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.historian.influx import AccessError, InfluxSink
from bridge.historian.influx_api import api_of_version, detect_api, make_sink
from bridge.historian.influx_v1 import InfluxV1Sink
from bridge.sink import RejectedError, RetryableError
from core import topics
from core.payload import Sample, TelemetryBatch, encode_batch
from testkit.historian import HistorianProcess, historian_env, plant_executable
from testkit.servers import InfluxDB, Mosquitto, free_port, running_influxdb
from tests.support.children import env_of
from tests.support.mqtt import client, collect, publish_and_wait, wait_until
from tests.support.payloads import FEEDER_TAGS, T0, event_payload, feeder_payload, site_id

pytestmark = pytest.mark.integration

StartHistorian = Callable[..., HistorianProcess]


@pytest.fixture
def start_historian(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> Iterator[StartHistorian]:
    """Start `plant bridge historian` and wait until its subscription is live."""
    started: list[HistorianProcess] = []

    def start(client_id: str | None = None, **settings: object) -> HistorianProcess:
        cid = client_id or site_id("historian")
        env = historian_env(mosquitto, influxdb, tmp_path, cid, **settings)
        process = HistorianProcess(env, tmp_path / f"{cid}.log")
        status = collect(mosquitto, "operator", f"pcmm/v1/hist-{cid}/status/historian")
        process.start()
        started.append(process)
        try:
            wait_until(lambda: b"online" in status.payloads(), 20, "the historian online")
        except AssertionError:
            raise AssertionError(process.text()) from None
        finally:
            status.client.disconnect()
            status.client.loop_stop()
        return process

    yield start
    for process in started:
        process.kill()


def telemetry_seqs(influx: InfluxDB, site: str, measurement: str = "telemetry") -> list[int]:
    """Every sample's seq stored for a site, in time order (one *_seq field per sample)."""
    fields = ",".join(f'"{name}_seq"' for name in FEEDER_TAGS)
    rows = influx.query(f'SELECT {fields} FROM "{measurement}" WHERE "site"=\'{site}\'')
    return [row[f"{n}_seq"] for row in rows for n in FEEDER_TAGS if row[f"{n}_seq"] is not None]


def test_samples_arrive_complete_in_order_with_source_times(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    site = site_id()
    historian = start_historian()
    edge = client(mosquitto, "edge")
    count = 300
    for i in range(count):
        publish_and_wait(
            edge, topics.SiteTopics(site).telemetry("api_feeder"), feeder_payload(site, i)
        )
    wait_until(lambda: len(telemetry_seqs(influxdb, site)) >= count * 5, 30, "all samples")
    rows = influxdb.query(f'SELECT * FROM "telemetry" WHERE "site"=\'{site}\'')
    assert len(rows) == count  # one point per source time
    assert [row["time"] for row in rows] == [T0 + i * 10_000_000 for i in range(count)]
    assert telemetry_seqs(influxdb, site) == list(range(count * 5))  # complete, in order
    assert rows[7]["module"] == "api_feeder"
    assert rows[7]["mass_flow_pv"] == pytest.approx(2.007)
    assert "mass_flow_pv_quality" not in rows[7] or rows[7]["mass_flow_pv_quality"] is None
    # The dashboard query of the README works as written.
    mean = influxdb.query(
        'SELECT mean("mass_flow_pv") FROM "telemetry" WHERE "site"=\'' + site + "' AND "
        f"\"module\"='api_feeder' AND time >= {T0} AND time < {T0 + count * 10_000_000} "
        "GROUP BY time(1s)"
    )
    assert len(mean) == 3 and all(row["mean"] is not None for row in mean)
    assert historian.running
    edge.disconnect()


def test_quality_truth_and_null_values(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    site = site_id()
    start_historian()
    edge = client(mosquitto, "edge")
    t = topics.SiteTopics(site)
    batch = TelemetryBatch(
        site,
        "nir",
        T0,
        (
            Sample("nir.api_pct", None, "bad", T0, T0, 0),
            Sample("nir.spectrum_ok", False, "uncertain", T0, T0, 1),
            Sample("nir.reading_count", 41, "good", T0, T0, 2),
        ),
    )
    publish_and_wait(edge, t.telemetry("nir"), encode_batch(batch))
    truth = TelemetryBatch(
        site, "blender", T0, (Sample("blender.true_api_pct", 10.01, "good", T0, T0, 3),)
    )
    publish_and_wait(edge, t.truth("blender"), encode_batch(truth))
    where = f"WHERE \"site\"='{site}'"
    wait_until(lambda: bool(influxdb.query(f'SELECT * FROM "truth" {where}')), 20, "truth")
    wait_until(lambda: bool(influxdb.query(f'SELECT * FROM "telemetry" {where}')), 20, "nir")
    (row,) = influxdb.query(f'SELECT * FROM "telemetry" {where}')
    assert row.get("api_pct") is None and row["api_pct_quality"] == "bad"
    assert row["api_pct_seq"] == 0
    assert row["spectrum_ok"] is False and row["spectrum_ok_quality"] == "uncertain"
    assert row["reading_count"] == 41 and "reading_count_quality" not in row
    (truth_row,) = influxdb.query(f'SELECT * FROM "truth" {where}')
    assert truth_row["true_api_pct"] == pytest.approx(10.01)
    assert truth_row["module"] == "blender"
    edge.disconnect()


def test_events_land_with_string_fields_and_same_ns_events_kept(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    site = site_id()
    start_historian()
    edge = client(mosquitto, "edge")
    topic = topics.SiteTopics(site).audit("twin")
    same = T0 + 5_000
    reason = 'campaign "7"\nline 2, \\ back=slash ü'
    publish_and_wait(
        edge,
        topic,
        event_payload(
            site, 10, same, user="alice", action="write", target="press.fill_depth_sp",
            old=9.5, new=14, reason=reason, accepted=False, result="range",
        ),
    )  # fmt: skip
    publish_and_wait(edge, topic, event_payload(site, 11, same, user="bob", action="start"))
    wait_until(
        lambda: len(influxdb.query(f'SELECT * FROM "events" WHERE "site"=\'{site}\'')) == 2,
        20,
        "both events",
    )
    rows = influxdb.query(f'SELECT * FROM "events" WHERE "site"=\'{site}\'')
    first = next(row for row in rows if row["seq"] == 10)
    assert first["time"] == same
    assert (first["kind"], first["source"], first["user"]) == ("audit", "twin", "alice")
    assert (first["old"], first["new"]) == ("9.5", "14")
    assert first["reason"] == reason
    assert first["accepted"] is False and first["result"] == "range"
    second = next(row for row in rows if row["seq"] == 11)
    assert second["time"] == same and second["user"] == "bob" and second["accepted"] is True
    edge.disconnect()


def test_malformed_payloads_go_to_dead_letter_and_the_historian_goes_on(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    site = site_id()
    historian = start_historian()
    dead = collect(mosquitto, "operator", topics.deadletter("historian"))
    edge = client(mosquitto, "edge")
    t = topics.SiteTopics(site)
    publish_and_wait(edge, t.telemetry("api_feeder"), b"\xff not json")
    bad_quality = json.loads(feeder_payload(site, 0))
    bad_quality["samples"][0]["quality"] = "meh"
    publish_and_wait(edge, t.telemetry("api_feeder"), json.dumps(bad_quality).encode())
    publish_and_wait(edge, t.telemetry("press"), feeder_payload(site, 1))  # wrong topic
    publish_and_wait(edge, t.telemetry("api_feeder"), feeder_payload(site, 2))  # good
    wait_until(lambda: len(dead.messages) >= 3, 20, "three dead letters")
    letters = [json.loads(payload) for payload in dead.payloads()]
    mine = [letter for letter in letters if site in letter["topic"]]
    assert len(mine) == 3
    assert mine[0]["reason"].startswith("not JSON") and "payload_b64" in mine[0]
    assert "quality 'meh'" in mine[1]["reason"]
    assert "on the topic of" in mine[2]["reason"]
    assert mine[2]["service"] == "historian"
    wait_until(lambda: len(telemetry_seqs(influxdb, site)) == 5, 20, "the good batch")
    assert telemetry_seqs(influxdb, site) == list(range(10, 15))
    assert historian.running
    edge.disconnect()


def test_batch_rejected_by_influxdb_is_dead_lettered_and_counted(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    site = site_id()
    historian = start_historian(METRICS_PERIOD_S=0.5)
    dead = collect(mosquitto, "operator", topics.deadletter("historian"))
    edge = client(mosquitto, "edge")
    topic = topics.SiteTopics(site).telemetry("api_feeder")
    assert influxdb.proxy is not None
    # Any write holding batch 0's line is refused whole (as 2.x refuses a batch with a bad
    # line): the historian splits its batch until that line alone is dead-lettered.
    influxdb.proxy.refuse_containing(
        b"mass_flow_pv_seq=0i,", body=b'{"code":"invalid","message":"field type conflict"}'
    )
    publish_and_wait(edge, topic, feeder_payload(site, 0))
    wait_until(lambda: any(b"field type conflict" in p for p in dead.payloads()), 20, "dead")
    letter = next(json.loads(p) for p in dead.payloads() if b"field type conflict" in p)
    assert letter["reason"].startswith("HTTP 400") and letter["topic"] == "influxdb"
    assert letter["payload"].startswith(f"telemetry,module=api_feeder,site={site} ")
    assert "\n" not in letter["payload"]  # that line only, whatever else its batch held
    influxdb.proxy.clear_faults()
    publish_and_wait(edge, topic, feeder_payload(site, 1))  # the next batch goes through
    wait_until(lambda: telemetry_seqs(influxdb, site) == list(range(5, 10)), 20, "batch 1")
    # A 503 is retried, not dropped.
    influxdb.proxy.fail_next(503, count=3)
    publish_and_wait(edge, topic, feeder_payload(site, 2))
    wait_until(lambda: telemetry_seqs(influxdb, site) == list(range(5, 15)), 20, "batch 2")
    hist_site = env_of(historian)["PLANT_HISTORIAN_SITE_ID"]

    def metrics() -> dict[str, float]:
        rows = influxdb.query(
            f'SELECT last("dead_letters") AS dl, last("retries") AS r, '
            f'last("rejected") AS rej FROM "pipeline" WHERE "site"=\'{hist_site}\' '
            "AND \"service\"='historian'"
        )
        return rows[0] if rows else {}

    wait_until(lambda: metrics().get("r", 0) >= 3, 20, "self-metrics with the retries")
    assert metrics()["dl"] >= 1 and metrics()["rej"] >= 1
    edge.disconnect()


def test_bad_settings_exit_2_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [plant_executable(), "bridge", "historian"],
        env={"PLANT_HISTORIAN_BATCH_SIZE": "zero", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: PLANT_HISTORIAN_BATCH_SIZE: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def health(process: HistorianProcess) -> subprocess.CompletedProcess[str]:
    """`plant health historian` in the historian's own environment, as its healthcheck runs."""
    return subprocess.run(
        [plant_executable(), "health", "historian", "--timeout", "5"],
        env=process.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_health_fails_with_a_clear_message_when_influxdb_refuses_the_historians_token(
    influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    assert influxdb.proxy is not None
    influxdb.proxy.token = "write-only-token"  # the proxy now authenticates as 2.x does
    good = start_historian(INFLUX_TOKEN="write-only-token")
    done = health(good)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"healthy: historian of {env_of(good)['PLANT_HISTORIAN_SITE_ID']} online, "
        f"InfluxDB {influxdb.v2_url} takes its writes to 'pcmm'"
    ]
    # Online on MQTT (start_historian waited for it) but spooling: every write refused.
    bad = start_historian(INFLUX_TOKEN="a-wrong-token")
    done = health(bad)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"unhealthy: InfluxDB {influxdb.v2_url} refused the token (HTTP 401: unauthorized access)"
    ]


def test_the_write_check_reads_each_answer_of_influxdb_2(influxdb: InfluxDB) -> None:
    assert influxdb.proxy is not None
    proxy = influxdb.proxy
    proxy.token = "t"

    def check(token: str = "t", bucket: str = influxdb.db, url: str = influxdb.v2_url) -> None:
        sink = InfluxSink(url, token, "pcmm", bucket, timeout_s=5)
        try:
            sink.check_write_access()
        finally:
            sink.close()

    writes = proxy.writes
    check()  # 204: an empty write, as 2.0.9+ and 2.1+ answer it
    assert proxy.writes == writes + 1
    # InfluxDB 2.0.0 to 2.0.8 answered an empty write 400 once the token had passed.
    proxy.fail_next(400, body=b'{"code":"invalid","message":"writing requires points"}')
    check()
    with pytest.raises(AccessError, match=r"refused the token \(HTTP 401: unauthorized access\)"):
        check(token="wrong")
    proxy.fail_next(
        403, body=b'{"code":"forbidden","message":"insufficient permissions for write"}'
    )
    with pytest.raises(AccessError, match=r"refused the token \(HTTP 403: insufficient perm"):
        check()
    with pytest.raises(
        AccessError, match=r"no org 'pcmm' or bucket 'nope' \(HTTP 404: database not"
    ):
        check(bucket="nope")  # 1.6's own answer, forwarded
    proxy.fail_next(503, body=b'{"code":"unavailable","message":"busy"}')
    with pytest.raises(AccessError, match=r"answered HTTP 503: busy"):
        check()
    with pytest.raises(AccessError, match=r"unreachable: "):
        check(url=f"http://127.0.0.1:{free_port()}")
    assert influxdb.query("SHOW MEASUREMENTS") == []  # nothing was written


# --- InfluxDB 1.x through its own write API (no proxy) ------------------------------------


def test_auto_asks_the_server_which_api_it_speaks(influxdb: InfluxDB) -> None:
    api, version = detect_api(influxdb.url)
    assert api == "v1" and version.startswith("1.6.7"), version  # Debian's influxd
    assert detect_api(influxdb.v2_url) == ("v2", "")  # a server that does not say: v2
    assert [api_of_version(v) for v in ("1.8.10", "v2.7.11", "2.7.4", "3.0.1")] == [
        "v1", "v2", "v2", "v2",
    ]  # fmt: skip
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RetryableError, match="unreachable"):
        make_sink("auto", dead, "pcmm").write([b"m x=1 1"])


def test_the_v1_sink_maps_each_answer_of_influxdb_1x_to_the_runners_errors() -> None:
    with running_influxdb(auth=True) as influx:
        assert influx.admin is not None
        user, password = influx.admin
        sink = InfluxV1Sink(influx.url, influx.db, username=user, password=password)
        sink.check_write_access()  # an empty write: 204
        sink.write([b"m,site=a x=1 1000", b"m,site=a x=2 2000"])
        assert [r["x"] for r in influx.query('SELECT "x" FROM "m"')] == [1, 2]
        # A line 1.x cannot take: rejected per item, so the runner splits to find it.
        for bad, words in (
            (b'm,site=a x="text" 3000', "field type conflict"),
            (b"garbage", "unable to parse"),
        ):
            with pytest.raises(RejectedError, match=words) as caught:
                sink.write([bad])
            assert caught.value.per_item
        # About the request, not the lines: rejected whole.
        with pytest.raises(RejectedError, match="database not found") as caught:
            InfluxV1Sink(influx.url, "nodb", username=user, password=password).write([b"m x=1 5"])
        assert not caught.value.per_item
        with pytest.raises(AccessError, match=r"has no database 'nodb' \(HTTP 404"):
            InfluxV1Sink(influx.url, "nodb", username=user, password=password).check_write_access()
        with pytest.raises(AccessError, match=r"refused the credentials \(HTTP 401: auth"):
            InfluxV1Sink(influx.url, influx.db, username=user, password="bad").check_write_access()
        influx.query("CREATE USER reader WITH PASSWORD 'r'", post=True)
        influx.query(f'GRANT READ ON "{influx.db}" TO reader', post=True)
        reader = InfluxV1Sink(influx.url, influx.db, username="reader", password="r")
        with pytest.raises(AccessError, match=r"HTTP 403: \"reader\" user is not authorized"):
            reader.check_write_access()
        # "db/rp" names the retention policy, as 1.8's v2 compatibility does.
        week = f'CREATE RETENTION POLICY "week" ON "{influx.db}" DURATION 7d REPLICATION 1'
        influx.query(week, post=True)
        InfluxV1Sink(influx.url, f"{influx.db}/week", username=user, password=password).write(
            [f"m,site=rp x=3 {time.time_ns()}".encode()]  # inside the week
        )
        assert influx.query('SELECT "x" FROM "week"."m"')[0]["x"] == 3
        gz = InfluxV1Sink(influx.url, influx.db, username=user, password=password, gzip=True)
        gz.write([b"m,site=gz x=4 5000"])
        assert influx.query('SELECT "x" FROM "m" WHERE site=\'gz\'')[0]["x"] == 4
        url = influx.url
    with pytest.raises(RetryableError, match="Connection refused"):  # the server is gone
        InfluxV1Sink(url, "pcmm").write([b"m x=1 1"])


def test_the_historian_writes_to_influxdb_1x_directly_through_an_outage_and_dead_letters(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    """INFLUX_URL at influxd 1.6.7 itself, API auto: same retry, spool and dead-letter path."""
    site = site_id()
    historian = start_historian(INFLUX_URL=influxdb.url)  # INFLUX_API is "auto"
    assert health(historian).returncode == 0
    dead = collect(mosquitto, "operator", topics.deadletter("historian"))
    edge = client(mosquitto, "edge")
    topic = topics.SiteTopics(site).telemetry("api_feeder")
    for i in range(50):
        publish_and_wait(edge, topic, feeder_payload(site, i))
    wait_until(lambda: len(telemetry_seqs(influxdb, site)) == 250, 30, "50 batches")
    assert "writing through the v1 API" in historian.text()
    influxdb.stop()  # 1.x away: the historian spools and retries
    for i in range(50, 100):
        publish_and_wait(edge, topic, feeder_payload(site, i))
    influxdb.start()
    wait_until(lambda: len(telemetry_seqs(influxdb, site)) == 500, 60, "100 batches")
    assert telemetry_seqs(influxdb, site) == list(range(500))  # none lost, none twice
    # 1.x refuses a line whose field changes type ("partial write"): only it is dead-lettered.
    influxdb.write(f'events,site={site} seq="not an integer" {T0}')
    audit = topics.SiteTopics(site).audit("twin")
    publish_and_wait(edge, audit, event_payload(site, 1, T0 + 1, user="alice", action="start"))
    publish_and_wait(edge, topic, feeder_payload(site, 100))
    wait_until(lambda: any(b"field type conflict" in p for p in dead.payloads()), 20, "dead")
    letter = next(json.loads(p) for p in dead.payloads() if b"field type conflict" in p)
    assert letter["reason"].startswith("HTTP 400: partial write") and letter["topic"] == "influxdb"
    assert letter["payload"].startswith("events,") and f"site={site}" in letter["payload"]
    wait_until(lambda: len(telemetry_seqs(influxdb, site)) == 505, 20, "the batch beside it")
    assert historian.running
    edge.disconnect()
