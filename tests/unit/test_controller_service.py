"""The controller's MQTT adapter without a broker: the telemetry feed, its messages, settings.

The feed must decide exactly as the in-process closed loop does when it gets the same tags as
an edge would publish them (one batch per module, source times in ns), and must hold, and say
so, when telemetry stops.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from apps.closed_loop import carry_out, run
from controller import Supervisor
from controller.feed import TelemetryFeed, observed_value, plant_seconds
from controller.messages import (
    EventSequence,
    ModeError,
    ModeSwitch,
    SentCommand,
    alarm_event,
    command_event,
    decode_mode,
    encode_mode,
    request_of,
)
from controller.settings import ControllerSettings
from controller.supervisor import Action, Alarm
from core.faults import FaultSpec
from core.payload import CommandReply, decode_command, decode_event, encode_command, encode_event
from core.topics import SiteTopics
from tests.twin_telemetry import START_NS, EdgeLike
from twin import Plant

T0 = START_NS / 1e9


def bridging_plant() -> Plant:
    plant = Plant(seed=1, warm_start=True)
    plant.inject(FaultSpec("bridging", magnitude=0.8, duration_s=300, onset_s=plant.now + 120))
    return plant


def test_feed_decides_as_the_in_process_loop_does() -> None:
    plant = bridging_plant()
    until = plant.now + 900
    feed = TelemetryFeed(Supervisor(), stale_after_s=10)
    sent: list[tuple[int, Action]] = []
    for wall, batches in enumerate(EdgeLike(plant).run(until)):
        decisions = feed.take(batches, float(wall))
        last = feed.flush()
        for decision in [*decisions, *([last] if last else [])]:
            for action in decision.actions:
                sent.append((round(decision.time - T0), action))
                carry_out(plant, action)
    reference = bridging_plant()
    log = run(reference, Supervisor(), until)
    assert sent == [(round(t), a) for t, a, _ in log.actions]
    assert any(a.target == "diverter.position_sp" and a.value == "reject" for _, a in sent)
    assert plant.ledger.oos_accepted_tablets == 0


def test_one_decision_per_second_whatever_the_batching() -> None:
    plant = Plant(seed=3, warm_start=True)
    edge = EdgeLike(plant)
    seconds = list(edge.run(plant.now + 5))
    feed = TelemetryFeed(Supervisor(), stale_after_s=10)
    # All five seconds at once, modules shuffled: still one decision per second, in order.
    mixed = [b for batches in seconds for b in reversed(batches)]
    decisions = feed.take(mixed, 0.0)
    last = feed.flush()
    times = [d.time for d in [*decisions, *([last] if last else [])]]
    assert times == sorted(times)
    stamped = {s.source_ns for batches in seconds for b in batches for s in b.samples}
    assert len(times) == len(stamped)  # each second the telemetry has, once
    assert feed.flush() is None  # nothing new: no second decision


def test_duplicates_and_late_samples_are_dropped() -> None:
    plant = Plant(seed=3, warm_start=True)
    edge = EdgeLike(plant)
    runs = list(edge.run(plant.now + 3))
    feed = TelemetryFeed(Supervisor(), stale_after_s=10)
    for batches in runs:
        feed.take(batches, 0.0)
    observed = feed.samples
    feed.take(runs[0], 1.0)  # a QoS 1 redelivery of the first second
    assert feed.samples == observed
    assert feed.dropped == sum(len(b.samples) for b in runs[0])


def test_stale_telemetry_holds_and_says_so_then_resumes() -> None:
    plant = bridging_plant()
    edge = EdgeLike(plant)
    feed = TelemetryFeed(Supervisor(), stale_after_s=5)
    wall = 0.0
    for batches in edge.run(plant.now + 60):
        wall += 1.0
        feed.take(batches, wall)
        feed.flush()
    assert feed.check_stale(wall + 4.0) is None  # not yet
    held = feed.check_stale(wall + 5.0)
    assert held is not None and held.stale and held.actions == []
    assert [(a.name, a.raised) for a in held.alarms] == [("stale_telemetry", True)]
    assert held.time > feed.newest + feed.supervisor.cfg.stale_telemetry_s
    again = feed.check_stale(wall + 6.0)
    assert again is not None and again.time > held.time and again.alarms == []
    # Telemetry is back: the telemetry's clock rules again and the alarm clears.
    cleared = []
    for batches in edge.run(plant.now + 3):
        wall += 1.0
        for decision in feed.take(batches, wall):
            cleared += decision.alarms
    assert ("stale_telemetry", False) in [(a.name, a.raised) for a in cleared]
    assert not feed.stale


class Timed(Supervisor):
    """A supervisor that notes how far behind the plant each decision was said to be."""

    def __init__(self) -> None:
        super().__init__()
        self.behind: list[tuple[float, float]] = []  # (decided at, behind_s)

    def step(self, now: float) -> list[Action]:
        self.behind.append((now, self.behind_s))
        return super().step(now)


def test_a_burst_of_old_telemetry_after_a_stall_is_decided_as_late_as_it_is() -> None:
    """At 50x a controller stalled for 3 wall s gets 150 plant s of telemetry at once: each of
    those seconds is decided 150 s or less behind the plant, not as if it were the plant's now
    (the gate holds its accepts meanwhile: test_closed_loop's stalls)."""
    plant = Plant(seed=3, warm_start=True)
    edge = EdgeLike(plant)
    supervisor = Timed()
    feed = TelemetryFeed(supervisor, stale_after_s=10)
    speed, wall = 50.0, 0.0
    for batches in edge.run(plant.now + 300):  # steady: a plant second every 1/50 wall s
        wall += 1 / speed
        feed.take(batches, wall)
        feed.flush()
    steady = [b for _, b in supervisor.behind]
    assert feed.speed == pytest.approx(speed, rel=0.01)
    assert max(steady) <= 1.0  # a second is decided when the next one comes, at the latest
    supervisor.behind.clear()
    backlog = [b for batches in edge.run(plant.now + 150) for b in batches]
    wall += 3.0  # stalled: the plant ran on 150 s
    feed.take(backlog, wall)
    feed.flush()
    first, last = supervisor.behind[0], supervisor.behind[-1]
    assert first[1] == pytest.approx(150.0, abs=2.0)
    assert last[1] < 1.0
    # Telemetry flows again at the plant's pace: decided on time.
    supervisor.behind.clear()
    for batches in edge.run(plant.now + 20):
        wall += 1 / speed
        feed.take(batches, wall)
        feed.flush()
    assert max(b for _, b in supervisor.behind) < 1.0


def test_a_restarted_plant_is_followed_afresh() -> None:
    """The twin restarted (`docker compose restart twin`) at 50x: its plant time begins at 0
    again, mapped to UTC from its new start, so its source times are hours older than the ones
    the old run reached ahead of the wall clock. Every sample is older than what the feed has of
    its tag: dropped as a late replay, the controller was deaf (and not stale: telemetry kept
    coming) for as long as the old run had lasted. A source whose telemetry has run on for
    `stale_after_s` entirely behind what was seen has restarted: the feed follows it with a
    fresh supervisor (the old one's state belongs to another run of the plant)."""
    speed, wall = 50.0, 0.0
    old = EdgeLike(Plant(seed=3, warm_start=True))
    feed = TelemetryFeed(Supervisor(), stale_after_s=5)
    for batches in old.run(old.plant.now + 3000):  # an hour's run: 60 wall s at 50x
        wall += 1 / speed
        feed.take(batches, wall)
        feed.flush()
    first = feed.supervisor
    # Restarted 60 wall s after the old one started: 2,940 plant s behind what it reached.
    plant = bridging_plant()
    new = EdgeLike(plant, start_ns=old.start_ns + round(60e9))
    sent: list[Action] = []
    decided: list[float] = []
    for batches in new.run(plant.now + 600):
        wall += 1 / speed
        for decision in [*feed.take(batches, wall), *filter(None, [feed.flush()])]:
            decided.append(decision.time)
            sent += decision.actions
    assert feed.restarts == 1 and feed.supervisor is not first
    # Followed again once its telemetry had run on for stale_after_s (250 plant s at 50x), and
    # from then on every second, at the new run's source times.
    assert decided and decided[0] - new.start_ns / 1e9 <= plant.now - 600 + 260
    assert decided == sorted(decided) and decided[-1] == pytest.approx(
        new.start_ns / 1e9 + plant.now
    )
    assert any(a.target == "diverter.position_sp" and a.value == "reject" for a in sent)
    assert not feed.stale


def test_a_restarted_plant_clears_the_alarms_its_last_run_left_raised() -> None:
    """The old run's probe was biased when the twin restarted: its `nir_bias` alarm, raised,
    would have stood for good (the new supervisor knows nothing of it, so nothing clears it).
    It is cleared with the first decisions on the new run."""
    speed, wall = 50.0, 0.0
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("nir_bias", magnitude=1.0, duration_s=5000, onset_s=plant.now + 900))
    old = EdgeLike(plant)
    feed = TelemetryFeed(Supervisor(), stale_after_s=5)
    before: list[Alarm] = []
    for batches in old.run(plant.now + 1800):
        wall += 1 / speed
        for decision in [*feed.take(batches, wall), *filter(None, [feed.flush()])]:
            before += decision.alarms
    assert any(a.name == "nir_bias" and a.raised for a in before)
    # Restarted 20 wall s after the old one started: some 800 plant s behind what it reached.
    new = EdgeLike(Plant(seed=3, warm_start=True), start_ns=old.start_ns + round(20e9))
    after: list[Alarm] = []
    for batches in new.run(new.plant.now + 600):
        wall += 1 / speed
        for decision in [*feed.take(batches, wall), *filter(None, [feed.flush()])]:
            after += decision.alarms
    assert feed.restarts == 1
    nir = [a for a in after if a.name == "nir_bias"]
    assert nir and not nir[0].raised and "restarted" in nir[0].message
    assert nir[0].time >= new.start_ns / 1e9  # on the new run's clock


def test_old_telemetry_replayed_alone_is_not_a_restart() -> None:
    """Old samples that do not run on (a replay loop of what was seen, a second client
    republishing old messages) are no restarted plant: the feed keeps its supervisor, drops
    them, and holds as stale when nothing new comes."""
    plant = Plant(seed=3, warm_start=True)
    edge = EdgeLike(plant)
    runs = list(edge.run(plant.now + 60))
    feed = TelemetryFeed(Supervisor(), stale_after_s=5)
    wall = 0.0
    for batches in runs:
        wall += 1.0
        feed.take(batches, wall)
        feed.flush()
    first = feed.supervisor
    for _ in range(20):
        wall += 1.0
        assert feed.take(runs[0], wall) == []  # the first second, over and over
    assert feed.restarts == 0 and feed.supervisor is first
    held = feed.check_stale(wall)
    assert held is not None and held.stale


def test_watching_only_alarms_but_sends_nothing() -> None:
    plant = bridging_plant()
    feed = TelemetryFeed(Supervisor(enabled=False), stale_after_s=10)
    actions, alarms = [], []
    for wall, batches in enumerate(EdgeLike(plant).run(plant.now + 400)):
        for decision in feed.take(batches, float(wall)):
            actions += decision.actions
            alarms += decision.alarms
    assert actions == []
    assert "bridging" in {a.name for a in alarms if a.raised}


def test_observed_values() -> None:
    assert observed_value("line.state", "producing") == 2
    assert observed_value("diverter.position_pv", "reject") == 2
    assert observed_value("line.state", "gremlins") is None
    assert math.isnan(observed_value("nir.api_pct", None))
    assert observed_value("press.tablet_weight", None) is None
    assert observed_value("press.tablet_weight", 400.5) == 400.5
    assert plant_seconds(1_500_000_000_250_000_000) == pytest.approx(1_500_000_000.25)


# Messages ------------------------------------------------------------------------------------
def test_actions_become_commands_the_edge_can_decode() -> None:
    setpoint = request_of(Action("setpoint", "diverter.position_sp", "reject", "window"))
    decoded = decode_command(encode_command(setpoint), "setpoint")
    assert (decoded.tag, decoded.value, decoded.reason) == (
        "diverter.position_sp",
        "reject",
        "window",
    )
    line = request_of(Action("line", "abort", None, "gate stuck"))
    assert decode_command(encode_command(line), "line").action == "abort"
    with pytest.raises(ValueError, match="cannot send"):
        request_of(Action("fault", "x", None, ""))


def test_command_audit_records_the_result() -> None:
    request = request_of(Action("setpoint", "press.fill_depth_sp", 10.2, "weight 396 mg"))
    sent = SentCommand(request, T0 + 12.5, 10.0, "controller")
    ok = command_event("site1", 7, sent, CommandReply(True, "accepted", "", 0), 10)
    assert (ok.kind, ok.action, ok.target, ok.old, ok.new, ok.accepted, ok.result) == (
        "audit",
        "write",
        "press.fill_depth_sp",
        10.0,
        10.2,
        True,
        "accepted",
    )
    assert ok.time_ns == START_NS + 12_500_000_000
    assert ok.source == "controller" and ok.reason == "weight 396 mg"
    no = command_event("site1", 8, sent, CommandReply(False, "range", "too deep", 0), 10)
    assert (no.accepted, no.result) == (False, "range: too deep")
    lost = command_event("site1", 9, sent, None, 10)
    assert (lost.accepted, lost.result) == (False, "no reply within 10 s")
    assert decode_event(encode_event(no)) == no


def test_alarm_events() -> None:
    event = alarm_event("site1", 3, Alarm(T0 + 1, "bridging", True, "API feeder bridging"))
    assert (event.kind, event.target, event.action, event.reason) == (
        "alarm",
        "bridging",
        "raise",
        "API feeder bridging",
    )
    assert decode_event(encode_event(event)) == event


def test_event_sequences_rise_per_kind() -> None:
    seq = EventSequence(100)
    assert [seq.next("alarm"), seq.next("alarm"), seq.next("audit")] == [100, 101, 100]
    assert EventSequence().next("audit") > 1_700_000_000_000  # from the wall clock, in ms


@pytest.mark.parametrize(
    ("payload", "enabled"),
    [(b"auto", True), (b"manual", False), (encode_mode(ModeSwitch("manual", "alice", "x")), False)],
)
def test_mode_switch(payload: bytes, enabled: bool) -> None:
    assert decode_mode(payload).enabled is enabled


@pytest.mark.parametrize(
    "payload", [b"on", b'{"v": 1, "mode": "turbo"}', b"[1]", b'{"v": 2, "mode": "auto"}', b"\xff"]
)
def test_bad_mode_switch(payload: bytes) -> None:
    with pytest.raises(ModeError):
        decode_mode(payload)


# Settings ------------------------------------------------------------------------------------
def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANT_CONTROLLER_ENABLED", "false")
    monkeypatch.setenv("PLANT_CONTROLLER_SITE_ID", "site7")
    monkeypatch.setenv("PLANT_CONTROLLER_MQTT_PASSWORD", "s3cret")
    settings = ControllerSettings()
    assert not settings.enabled
    assert settings.mqtt_client_id == "pcmm-controller-site7"
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("PLANT_CONTROLLER_RETRY_MAX_S", "0.5")
    with pytest.raises(ValidationError, match="retry_max_s"):
        ControllerSettings()


def test_every_setting_is_in_the_example() -> None:
    example = Path(__file__).parents[2] / "controller" / "settings.env.example"
    keys = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert keys == {f"PLANT_CONTROLLER_{name.upper()}" for name in ControllerSettings.model_fields}


def test_the_controllers_topics() -> None:
    topics = SiteTopics("site1")
    assert topics.all_telemetry == "pcmm/v1/site1/+/telemetry"
    assert topics.mode("controller") == "pcmm/v1/site1/mode/controller"
    assert topics.command("setpoint", "controller") == "pcmm/v1/site1/command/setpoint/controller"


def test_a_failing_step_holds_and_says_why() -> None:
    class Broken(Supervisor):
        def step(self, now: float) -> list[Action]:
            raise ZeroDivisionError("float division by zero")

    plant = Plant(seed=3, warm_start=True)
    feed = TelemetryFeed(Broken(), stale_after_s=10)
    decisions = [d for batches in EdgeLike(plant).run(plant.now + 3) for d in feed.take(batches, 0)]
    assert decisions and all(d.actions == [] for d in decisions)
    assert decisions[0].error == "ZeroDivisionError: float division by zero"
