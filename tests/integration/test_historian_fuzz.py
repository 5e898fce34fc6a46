"""Fuzzing the historian's decode/convert path: in-process (3,000 payloads) and live (500).

In-process: random bytes, random JSON and near-valid batches, events and metrics on random
historian topics. `convert` must return line protocol or raise `PayloadError`; anything else
would crash the ingest loop. Live: a burst of such payloads through the broker; the historian
process survives and dead-letters exactly the ones `convert` refuses.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.historian.points import convert, timestamps
from core import topics
from core.payload import PayloadError
from testkit.servers import InfluxDB, Mosquitto
from tests.integration.test_historian import StartHistorian, start_historian
from tests.support.children import env_of
from tests.support.mqtt import client, collect, wait_until
from tests.support.payloads import T0, event_payload, feeder_batch, feeder_payload, site_id

pytestmark = pytest.mark.integration
__all__ = ["start_historian"]

SITE = "fuzz"
TOPICS = [
    topics.SiteTopics(SITE).telemetry("api_feeder"),
    topics.SiteTopics(SITE).truth("api_feeder"),
    topics.SiteTopics(SITE).audit("twin"),
    topics.SiteTopics(SITE).metrics("edge"),
    "pcmm/v1/fuzz/x/y/z",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A valid batch, event or metrics report with a few keys changed, removed or added."""
    kind = draw(st.sampled_from(["batch", "event", "metrics"]))
    obj: dict[str, Any]
    if kind == "batch":
        obj = json.loads(feeder_payload(SITE, draw(st.integers(0, 1000))))
        target = draw(st.sampled_from([obj, *obj["samples"]]))
    elif kind == "event":
        obj = json.loads(event_payload(SITE, 1, T0, user="u", old=1.0))
        target = obj
    else:
        obj = {"v": 1, "service": "edge", "site": SITE, "instance": "e1", "time_ns": T0,
               "values": {"received": 1}}  # fmt: skip
        target = draw(st.sampled_from([obj, obj["values"]]))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*target.keys(), "extra"]))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return _dumps(obj)


payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(_dumps),
    near_valid(),
)


@settings(
    # 3,000: 10,000 took 71 s of CI's 30-minute budget (the fifth slowest test), with the
    # suite at 28-31 minutes.
    max_examples=3_000,
    deadline=None,
    derandomize=True,  # the same 3,000 payloads on every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(topic=st.sampled_from(TOPICS), payload=payloads)
def test_convert_never_crashes(topic: str, payload: bytes) -> None:
    try:
        lines = convert(topic, payload)
    except PayloadError:
        return
    for line in lines:
        assert b"\n" not in line.split(b'"')[0]  # no line break outside a string
        assert timestamps([line])[0] >= 0


def burst(count: int, site: str) -> list[tuple[str, bytes]]:
    """`count` fuzz messages for a site, with a fixed seed: garbage, JSON and broken batches."""
    rng = random.Random(7)
    t = topics.SiteTopics(site)
    messages = []
    for i in range(count):
        choice = rng.random()
        if choice < 0.3:
            payload = rng.randbytes(rng.randint(0, 300))
        elif choice < 0.5:
            payload = json.dumps({"v": rng.choice([1, 2]), "x": rng.random()}).encode()
        elif choice < 0.8:
            obj = json.loads(feeder_payload(site, i))
            sample = rng.choice(obj["samples"])
            sample[rng.choice(list(sample))] = rng.choice([None, "x", -1, 1e400, [], 2**65])
            payload = json.dumps(obj).encode()
        else:
            payload = feeder_payload(site, i)  # valid: must be stored, not dead-lettered
        messages.append((t.telemetry("api_feeder"), payload))
    return messages


def test_live_burst_is_dead_lettered_and_the_historian_survives(
    mosquitto: Mosquitto, influxdb: InfluxDB, start_historian: StartHistorian
) -> None:
    site = site_id("fuzz")
    historian = start_historian()
    dead = collect(mosquitto, "operator", topics.deadletter("historian"))
    messages = burst(500, site)
    invalid, valid_points = 0, 0
    for topic, payload in messages:
        try:
            valid_points += len(convert(topic, payload))
        except PayloadError:
            invalid += 1
    assert 300 < invalid < 500
    edge = client(mosquitto, "edge")
    infos = [edge.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=30)
    wait_until(lambda: len(dead.messages) >= invalid, 30, f"{invalid} dead letters")
    wait_until(
        lambda: (
            len(influxdb.query(f'SELECT * FROM "telemetry" WHERE "site"=\'{site}\''))
            >= valid_points
        ),
        30,
        "the valid batches",
    )
    assert len(dead.messages) == invalid
    assert historian.running
    hist_site = env_of(historian)["PLANT_HISTORIAN_SITE_ID"]
    wait_until(
        lambda: any(
            row["invalid"] == invalid
            for row in influxdb.query(
                f'SELECT "invalid" FROM "pipeline" WHERE "site"=\'{hist_site}\''
            )
        ),
        10,
        "the invalid counter in the self-metrics",
    )
    # The historian still works after the burst.
    edge.publish(topics.SiteTopics(site).telemetry("api_feeder"), feeder_payload(site, 10_000))
    index = feeder_batch(site, 10_000).samples[0].source_ns
    wait_until(
        lambda: bool(influxdb.query(f'SELECT * FROM "telemetry" WHERE time = {index}')),
        10,
        "a batch after the burst",
    )
