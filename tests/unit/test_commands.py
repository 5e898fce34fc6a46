"""Setpoints and line commands: validated against the registry and the state, always audited."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.commands import LineCommand, SetpointCommand
from twin import Plant


def test_accepted_setpoint_is_applied_and_audited(warm: Callable[..., Plant]) -> None:
    plant = warm()
    plant.advance(10)
    result = plant.apply(SetpointCommand("blender.speed_sp", 300, user="alice", reason="trial"))
    assert result.accepted and result.old == 250.0 and result.new == 300.0
    assert plant.read("blender.speed_sp") == 300.0
    plant.advance(60)
    assert plant.read("blender.speed_pv") == pytest.approx(300.0, rel=0.01)
    record = list(plant.audit)[-1]
    assert (
        record.user,
        record.action,
        record.target,
        record.old,
        record.new,
        record.reason,
        record.accepted,
        record.time,
    ) == ("alice", "write", "blender.speed_sp", 250.0, 300.0, "trial", True, 10.0)


def test_enum_setpoints_take_state_names(warm: Callable[..., Plant]) -> None:
    plant = warm()
    result = plant.apply(SetpointCommand("api_feeder.mode_sp", "volumetric"))
    assert result.accepted and (result.old, result.new) == ("gravimetric", "volumetric")
    plant.advance(5)
    assert plant.read("api_feeder.mode") == 1


@pytest.mark.parametrize(
    ("tag", "value", "reason"),
    [
        ("press.fill_depth_sp", 20.0, "outside the range 7..13 mm"),
        ("api_feeder.mass_flow_sp", -1, "outside the range 0..5 kg/h"),
        ("api_feeder.mass_flow_sp", "lots", "expected a number"),
        ("diverter.position_sp", "open", "not one of accept, reject"),
        ("press.main_force", 10.0, "is a measured tag"),
        ("line.state", 1, "is a state tag"),
        ("press.nope", 1.0, "unknown tag"),
    ],
)
def test_invalid_setpoints_are_rejected_with_a_reason_and_audited(
    warm: Callable[..., Plant], tag: str, value: object, reason: str
) -> None:
    plant = warm()
    before = dict(plant.store.values)
    result = plant.apply(SetpointCommand(tag, value, user="mallory", reason="test"))
    assert not result.accepted
    assert reason in result.reason
    assert plant.store.values == before
    record = list(plant.audit)[-1]
    assert (record.user, record.target, record.accepted) == ("mallory", tag, False)
    assert reason in record.result


def test_line_commands_follow_the_state_machine() -> None:
    plant = Plant(seed=1)
    assert plant.state == "idle"
    rejected = plant.apply(LineCommand("stop", user="bob"))
    assert not rejected.accepted and "while it is idle" in rejected.reason
    assert plant.apply(LineCommand("start", user="bob")).accepted
    assert not plant.apply(LineCommand("start")).accepted
    plant.advance(200)
    assert plant.state == "starting"
    assert plant.read("diverter.position_pv") == 2  # start-up material goes to reject
    plant.advance(400)
    assert plant.state == "producing"
    assert plant.read("diverter.position_pv") == 0
    assert plant.apply(LineCommand("stop")).accepted
    plant.advance(2000)
    assert plant.state == "stopped"
    assert plant.apply(LineCommand("start")).accepted
    actions = [(r.action, r.accepted) for r in plant.audit]
    assert actions == [
        ("stop", False),
        ("start", True),
        ("start", False),
        ("stop", True),
        ("start", True),
    ]


def test_unknown_line_command_is_rejected() -> None:
    plant = Plant(seed=1)
    result = plant.apply(LineCommand("explode"))  # type: ignore[arg-type]
    assert not result.accepted and "unknown line command" in result.reason


def test_a_starved_press_trips_the_line_and_reset_recovers(warm: Callable[..., Plant]) -> None:
    plant = warm()
    # Run the press far faster than the feed: the hopper empties and the press starves.
    plant.apply(SetpointCommand("press.turret_speed_sp", 35.0))
    plant.advance(600)
    assert plant.state == "faulted"
    assert any("starved" in e.message for e in plant.events)
    refused = plant.apply(SetpointCommand("blender.speed_sp", 300))
    assert not refused.accepted and "faulted" in refused.reason
    assert plant.apply(SetpointCommand("diverter.position_sp", "reject")).accepted
    assert plant.apply(LineCommand("reset", reason="hopper refilled")).accepted
    assert plant.state == "stopped"


def test_abort_halts_everything_at_once_and_needs_a_reset(warm: Callable[..., Plant]) -> None:
    plant = warm()
    plant.advance(60)
    made = plant.ledger.tablets_made
    holdup = plant.holdup_kg()
    assert plant.apply(LineCommand("abort", user="controller", reason="diverter stuck")).accepted
    plant.advance(120)
    assert plant.state == "faulted"
    assert plant.ledger.tablets_made - made < 20  # the turret stopped within the step
    assert plant.holdup_kg() > 0.9 * holdup  # material stays in the line
    assert not plant.apply(LineCommand("start")).accepted
    assert plant.apply(LineCommand("reset")).accepted
    assert plant.apply(LineCommand("start")).accepted
