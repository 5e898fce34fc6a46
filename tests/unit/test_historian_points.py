"""bridge.historian.points: the InfluxDB schema, derived from the tag registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.historian.points import EVENT_SLOTS, FIELDS, MAX_TIME_NS, convert, route
from bridge.historian.settings import (
    PLANNED_BYTES_PER_S,
    PLANNED_MESSAGES_PER_S,
    REPLAYABLE_OUTAGE_S,
    HistorianSettings,
)
from bridge.metrics import Metrics, encode_metrics
from core import topics
from core.payload import Event, PayloadError, Sample, TelemetryBatch, encode_batch, encode_event
from core.tags import TEMPLATES

T = topics.SiteTopics("site1")
NS = 1_700_000_000_000_000_000


def batch(*samples: Sample, module: str = "api_feeder", site: str = "site1") -> bytes:
    return encode_batch(TelemetryBatch(site, module, NS, samples))


def test_fields_cover_every_tag_name_of_the_registry() -> None:
    names = {spec.name for specs in TEMPLATES.values() for spec in specs}
    assert set(FIELDS) == names


def test_samples_at_one_instant_share_a_point_with_seq_and_quality() -> None:
    lines = convert(
        T.telemetry("api_feeder"),
        batch(
            Sample("api_feeder.mass_flow_pv", 2, "good", NS, NS, 7),
            Sample("api_feeder.mode", "volumetric", "uncertain", NS, NS, 8),
            Sample("api_feeder.refilling", True, "good", NS + 1, NS, 9),
            Sample("api_feeder.refill_lot", 12.0, "good", NS + 1, NS, 10),
        ),
    )
    assert lines == [
        b"telemetry,module=api_feeder,site=site1 mass_flow_pv=2.0,mass_flow_pv_seq=7i,"
        b'mode=1i,mode_quality="uncertain",mode_seq=8i ' + str(NS).encode(),
        b"telemetry,module=api_feeder,site=site1 refilling=true,refilling_seq=9i,"
        b"refill_lot=12i,refill_lot_seq=10i " + str(NS + 1).encode(),
    ]


def test_truth_goes_to_its_own_measurement_and_never_to_telemetry() -> None:
    sample = Sample("blender.true_api_pct", 10.0, "good", NS, NS, 1)
    (line,) = convert(T.truth("blender"), batch(sample, module="blender"))
    assert line.startswith(b"truth,module=blender,site=site1 true_api_pct=10.0,")
    with pytest.raises(PayloadError, match="ground truth"):
        convert(T.telemetry("blender"), batch(sample, module="blender"))


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        (Sample("api_feeder.nonsense", 1.0, "good", NS, NS, 1), "not a tag of the registry"),
        (Sample("api_feeder.mass_flow_pv", "fast", "good", NS, NS, 1), "expects float"),
        (Sample("api_feeder.mass_flow_pv", True, "good", NS, NS, 1), "expects float"),
        (Sample("api_feeder.refilling", 1, "good", NS, NS, 1), "expects bool"),
        (Sample("api_feeder.refill_lot", 1.5, "good", NS, NS, 1), "expects int"),
        (Sample("api_feeder.refill_lot", 2**63, "good", NS, NS, 1), "expects int"),
        (Sample("api_feeder.refill_lot", 2**64, "good", NS, NS, 1), "over 64 bits"),
        (Sample("api_feeder.mode", "sideways", "good", NS, NS, 1), "expects enum"),
    ],
)
def test_values_must_fit_the_registry_type(sample: Sample, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        convert(T.telemetry("api_feeder"), batch(sample))


def test_topic_and_payload_must_agree() -> None:
    payload = batch(Sample("api_feeder.mass_flow_pv", 1.0, "good", NS, NS, 1))
    with pytest.raises(PayloadError, match="on the topic of"):
        convert(topics.SiteTopics("site2").telemetry("api_feeder"), payload)
    with pytest.raises(PayloadError, match="not a historian topic"):
        convert(T.command("setpoint", "alice"), payload)
    with pytest.raises(PayloadError, match="not an identifier"):
        route("pcmm/v1/si te/api_feeder/telemetry")


def test_events_keep_strings_and_same_ns_events_get_distinct_slots() -> None:
    first = Event("site1", "alarm", 64, NS, "twin", user="al ice", action="write",
                  target="press.fill_depth_sp", old=9.5, new=None, reason='a "b"\nc\\',
                  accepted=False, result="range")  # fmt: skip
    second = Event("site1", "alarm", 65, NS, "twin")
    (a,) = convert(T.event("alarm"), encode_event(first))
    (b,) = convert(T.event("alarm"), encode_event(second))
    assert a == (
        b'events,kind=alarm,site=site1,slot=0,source=twin user="al ice",action="write",'
        b'target="press.fill_depth_sp",reason="a \\"b\\"\nc\\\\",result="range",old="9.5",'
        b"accepted=false,seq=64i " + str(NS).encode()
    )
    assert b"slot=1," in b
    assert EVENT_SLOTS == 64


def test_metrics_are_floats_in_pipeline() -> None:
    report = Metrics("edge", "site1", "edge-1", NS, {"received": 3, "lag_ms": 1.5})
    (line,) = convert(T.metrics("edge"), encode_metrics(report))
    assert line == (
        b"pipeline,instance=edge-1,service=edge,site=site1 received=3.0,lag_ms=1.5 "
        + str(NS).encode()
    )
    bad = json.loads(encode_metrics(report))
    bad["values"]["received"] = True
    with pytest.raises(PayloadError, match="not a number"):
        convert(T.metrics("edge"), json.dumps(bad).encode())


def test_lone_surrogates_are_refused_not_crashing() -> None:
    event = json.loads(encode_event(Event("site1", "alarm", 1, NS, "twin")))
    event["reason"] = "\ud800"
    with pytest.raises(PayloadError, match="lone surrogate"):
        convert(T.event("alarm"), json.dumps(event).encode())


def test_settings_example_lists_every_key_and_parses() -> None:
    example = Path(__file__).parents[2] / "bridge" / "historian" / "settings.env.example"
    env = dict(
        line.split("=", 1)
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(env) == {f"PLANT_HISTORIAN_{k.upper()}" for k in HistorianSettings.model_fields}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert HistorianSettings() == HistorianSettings.model_construct(
            **{k: f.default for k, f in HistorianSettings.model_fields.items()}
        )


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (T.event("alarm"), encode_event(Event("site1", "alarm", 1, NS, "twin\n"))),
        (T.event("alarm"), encode_event(Event("site1", "alarm", 1, NS, "twin\nx=1 2"))),
        ("pcmm/v1/site1\n/events/alarm", encode_event(Event("site1\n", "alarm", 1, NS, "twin"))),
        (
            T.metrics("edge"),
            encode_metrics(Metrics("edge", "site1", "edge-1\n", NS, {"received": 1.0})),
        ),
        (
            "pcmm/v1/site1/api_feeder\n/telemetry",
            batch(
                Sample("api_feeder\n.mass_flow_pv", 1.0, "good", NS, NS, 1), module="api_feeder\n"
            ),
        ),
    ],
)
def test_a_trailing_newline_never_passes_as_an_identifier(topic: str, payload: bytes) -> None:
    """`$` matches before a final newline: with `match` "twin\\n" passed and split the line."""
    with pytest.raises(PayloadError, match=r"not an identifier|not a tag"):
        convert(topic, payload)


def test_times_outside_influxdbs_range_are_refused() -> None:
    assert MAX_TIME_NS == 9_223_372_036_854_775_806  # models.MaxNanoTime of InfluxDB
    ns = 2**63 - 1  # a valid int64, and the schema's largest time: InfluxDB refuses it
    with pytest.raises(PayloadError, match="outside InfluxDB's range"):
        convert(T.event("alarm"), encode_event(Event("site1", "alarm", 1, ns, "twin")))
    sample = Sample("api_feeder.mass_flow_pv", 1.0, "good", ns, NS, 1)
    with pytest.raises(PayloadError, match="outside InfluxDB's range"):
        convert(T.telemetry("api_feeder"), batch(sample))
    report = Metrics("edge", "site1", "edge-1", ns, {"received": 1.0})
    with pytest.raises(PayloadError, match="outside InfluxDB's range"):
        convert(T.metrics("edge"), encode_metrics(report))
    (line,) = convert(T.event("alarm"), encode_event(Event("site1", "alarm", 1, MAX_TIME_NS, "t")))
    assert line.endswith(b" 9223372036854775806")


def test_every_line_is_one_line() -> None:
    """Newlines only inside string fields, where line protocol allows them."""
    event = Event("site1", "alarm", 1, NS, "twin", reason="a\nb\r\n", user='"\\')
    (line,) = convert(T.event("alarm"), encode_event(event))
    head = line.partition(b' user="')[0]
    assert b"\n" not in head
    assert line.endswith(b"seq=1i " + str(NS).encode())


def test_the_session_lasts_the_outage_the_brokers_queue_holds() -> None:
    """The default session expiry is the replayable outage, and deploy/mosquitto's queue
    holds that outage of the planned traffic (more would be lost to the queue's limit first)."""
    conf = Path(__file__).parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"
    values = dict(
        line.split(None, 1) for line in conf.read_text().splitlines() if line and line[0] != "#"
    )
    assert HistorianSettings().mqtt_session_expiry_s == REPLAYABLE_OUTAGE_S
    assert int(values["max_queued_messages"]) >= REPLAYABLE_OUTAGE_S * PLANNED_MESSAGES_PER_S
    assert 0 < REPLAYABLE_OUTAGE_S * PLANNED_BYTES_PER_S <= int(values["max_queued_bytes"])
