"""`plant demo`'s pure parts: generated configuration, settings per site, the operator's board."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.demo.services import Demo, DemoError, influx_from_env, make_sites
from apps.demo.view import alarms_text
from apps.demo.watch import Board, describe, worth_showing
from apps.servers import DEPLOY_MOSQUITTO, find_mosquitto
from apps.servers import mosquitto_config as broker_config
from core.layout import load_layout
from core.payload import Event, Sample, TelemetryBatch, encode_batch, encode_event
from core.tags import build_registry
from tests.support.children import env_of


def test_broker_config_listens_on_loopback_with_the_demo_files(tmp_path: Path) -> None:
    text = broker_config((DEPLOY_MOSQUITTO / "mosquitto.conf").read_text(), 1234, tmp_path)
    lines = text.splitlines()
    assert "listener 1234 127.0.0.1" in lines
    assert f"password_file {tmp_path / 'passwd'}" in lines
    assert f"acl_file {tmp_path / 'acl'}" in lines
    assert "allow_anonymous false" in lines  # the deployed policy is kept as it is


def test_broker_config_refuses_a_config_it_cannot_place(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="lacks"):
        broker_config("listener 1883\n", 1234, tmp_path)


def test_sites_differ_in_seed_equipment_and_port() -> None:
    ports = iter(range(5000, 5010))
    sites = make_sites(3, lambda: next(ports))
    assert [s.id for s in sites] == ["site1", "site2", "site3"]
    assert [s.variation for s in sites] == [0.0, 0.05, 0.05]
    assert len({s.seed for s in sites}) == len({s.opcua_port for s in sites}) == 3
    assert sites[1].opcua_url == "opc.tcp://127.0.0.1:5001/pcmm/site2"


def test_historian_is_on_only_when_an_influxdb_is_configured() -> None:
    assert influx_from_env({}) is None
    influx = influx_from_env({"PLANT_HISTORIAN_INFLUX_URL": "http://db:8086"})
    assert influx is not None and (influx.org, influx.bucket) == ("pcmm", "pcmm")


def test_a_missing_mosquitto_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="no mosquitto at"):
        find_mosquitto(tmp_path / "mosquitto")


def test_services_get_secrets_as_files_and_a_stale_variable_cannot_override_them(
    tmp_path: Path,
) -> None:
    demo = Demo(
        tmp_path,
        make_sites(2, iter([4841, 4842]).__next__),
        1883,
        speed=5.0,
        base_env={"PLANT_EDGE_MQTT_PASSWORD": "stale", "PATH": "/bin"},
    )
    edge = demo.edge(demo.sites[1])
    edge_env = env_of(edge)
    assert edge_env["PLANT_EDGE_MQTT_PASSWORD__FILE"].endswith("mqtt_edge_password")
    assert "PLANT_EDGE_MQTT_PASSWORD" not in edge_env
    # The edge holds commands to the ranges its server publishes (EURange), so it is not told
    # the site's equipment variation; the server is.
    assert "PLANT_EDGE_VARIATION" not in edge_env
    assert float(env_of(demo.opcua(demo.sites[1]))["PLANT_OPCUA_VARIATION"]) > 0
    assert edge.argv[1:3] == ["-m", "apps.envfiles"]
    assert demo.historian() is None


def _board() -> Board:
    return Board({"site1": build_registry(load_layout(None).modules)})


def _event(**fields: object) -> bytes:
    values: dict[str, object] = {"site": "site1", "kind": "audit", "seq": 1, "time_ns": 1}
    values.update(source="twin")
    values.update(fields)
    return encode_event(Event(**values))  # type: ignore[arg-type]


def test_board_keeps_values_and_counts_samples_against_the_spec() -> None:
    board = _board()
    samples = tuple(
        Sample("nir.api_pct", value, "good", 1, 1, i)
        for i, value in enumerate((10.0, 10.2, 11.0, 9.9))
    )
    board.feed(
        "pcmm/v1/site1/nir/telemetry", encode_batch(TelemetryBatch("site1", "nir", 1, samples))
    )
    site = board.sites["site1"]
    assert site.values["nir.api_pct"] == 9.9
    assert site.in_spec_pct("nir.api_pct") == 75.0
    state = Sample("line.state", 2, "good", 1, 1, 9)
    board.feed(
        "pcmm/v1/site1/line/telemetry", encode_batch(TelemetryBatch("site1", "line", 1, (state,)))
    )
    assert site.text("line.state") == "producing"


def test_board_tracks_faults_and_controller_actions_once_each() -> None:
    board = _board()
    site = board.sites["site1"]
    raised = _event(kind="fault", action="fault_raised", target="bridging@api_feeder")
    board.feed("pcmm/v1/site1/events/fault", raised)
    assert list(site.faults) == ["bridging@api_feeder"]
    command = {
        "action": "write", "target": "press.fill_depth_sp", "old": 9.8, "new": 9.9,
        "reason": "tablet weight 398 mg",
    }  # fmt: skip
    # One command of the controller: the edge's receipt, the plant's record, the controller's.
    receipt = _event(seq=8, source="edge", user="controller", action="command:setpoint")
    plant = _event(seq=7, user="controller via edge", **command)
    own = _event(seq=3, source="controller", user="controller", result="accepted", **command)
    for _ in range(2):  # the edge replays what the broker acknowledged lately
        board.feed("pcmm/v1/site1/events/audit/edge", receipt)
        board.feed("pcmm/v1/site1/events/audit/twin", plant)
        board.feed("pcmm/v1/site1/events/audit/controller", own)
    assert site.controller_actions == 1
    shown = [describe(e) for e in site.events]
    assert shown == [
        "fault raised bridging@api_feeder",
        "controller write press.fill_depth_sp 9.8 -> 9.9 (accepted): tablet weight 398 mg",
    ]
    # A command that got no answer shows once too, with that outcome; notes are not actions.
    lost = _event(
        seq=4, source="controller", user="controller", accepted=False,
        result="no reply within 10 s", **command,
    )  # fmt: skip
    board.feed("pcmm/v1/site1/events/audit/controller", lost)
    note = _event(seq=5, source="controller", user="controller", action="mode", target="controller")
    board.feed("pcmm/v1/site1/events/audit/controller", note)
    assert site.controller_actions == 2
    assert describe(site.events[-2]).startswith(
        "controller write press.fill_depth_sp 9.8 -> 9.9 NO REPLY (no reply within 10 s)"
    )
    # An operator's command: the plant's record is the one shown.
    board.feed(
        "pcmm/v1/site1/events/audit/twin", _event(seq=9, user="operator via edge", **command)
    )
    assert describe(site.events[-1]).startswith("operator via edge write press.fill_depth_sp")
    board.feed(
        "pcmm/v1/site1/events/fault",
        _event(kind="fault", seq=2, action="fault_cleared", target="bridging@api_feeder"),
    )
    assert site.faults == {}
    board.feed("pcmm/v1/site1/events/audit", b"not json")
    assert board.rejected == 1


def test_an_event_reads_as_who_did_what_and_why() -> None:
    event = Event(
        "site1", "audit", 1, 1, "twin", "controller via edge", "write", "press.fill_depth_sp",
        9.8, 9.9, "tablet weight 398 mg",
    )  # fmt: skip
    assert describe(event) == (
        "controller via edge write press.fill_depth_sp 9.8 -> 9.9: tablet weight 398 mg"
    )
    refused = Event("site1", "audit", 2, 1, "edge", "viewer", "command:line", accepted=False)
    assert worth_showing(refused) and "REFUSED" in describe(refused)


def test_the_live_view_lists_unacknowledged_alarms_most_urgent_first() -> None:
    board = _board()

    def transition(seq: int, alarm: str, action: str, priority: int, state: str) -> bytes:
        return encode_event(
            Event(
                "site1",
                "alarm",
                seq,
                seq * 10**9,
                "twin",
                action=action,
                target=alarm,
                priority=priority,
                level="Active",
                state=state,
            )
        )

    topic = "pcmm/v1/site1/events/alarm"
    board.feed(topic, transition(1, "equipment.punch_wear", "raise", 300, "active_unacked"))
    board.feed(topic, transition(2, "equipment.diverter_stuck", "raise", 900, "active_unacked"))
    board.feed(topic, transition(3, "equipment.bridging", "raise", 700, "active_unacked"))
    board.feed(topic, transition(4, "equipment.bridging", "acknowledge", 700, "active_acked"))
    site = board.sites["site1"]
    assert [a for a, *_ in site.unacknowledged()] == [
        "equipment.diverter_stuck",
        "equipment.punch_wear",
    ]
    shown = alarms_text(site).plain
    assert shown.index("critical: equipment.diverter_stuck") < shown.index("low: equipment.punch")


def test_the_controllers_own_alarm_report_is_listed_but_not_shown_twice() -> None:
    board = _board()
    report = Event(
        "site1",
        "alarm",
        1,
        10**9,
        "twin",
        user="controller via edge",
        action="raise",
        target="controller.bridging",
        priority=700,
        level="Active",
        state="active_unacked",
    )
    assert board.feed("pcmm/v1/site1/events/alarm", encode_event(report)) is None
    assert [a for a, *_ in board.sites["site1"].unacknowledged()] == ["controller.bridging"]
