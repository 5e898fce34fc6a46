"""Alarm definitions from the registry, their debouncing, and the ISA-18.2 lifecycle."""

from __future__ import annotations

import pytest

from core.alarms import (
    MAX_TIME_SHELVED_S,
    AlarmBoard,
    AlarmDef,
    AlarmState,
    Kind,
    LifecycleError,
    Origin,
    Priority,
    Shelving,
    build_alarms,
)
from core.tags import PRODUCT_SPEC
from twin import Plant


@pytest.fixture(scope="module")
def alarms() -> dict[str, AlarmDef]:
    plant = Plant(seed=1)
    return {a.id: a for a in build_alarms(plant.layout.modules, plant.registry)}


def state(alarms: dict[str, AlarmDef], alarm_id: str) -> AlarmState:
    return AlarmState(alarms[alarm_id])


def test_product_limits_are_the_alarms_hh_and_ll_with_a_warning_band_inside(
    alarms: dict[str, AlarmDef],
) -> None:
    for tag_id, spec in (("nir.api_pct", "api_pct"), ("press.tablet_weight", "tablet_weight")):
        alarm = alarms[tag_id]
        low, high = PRODUCT_SPEC[spec]
        assert alarm.kind is Kind.LIMIT and alarm.source == tag_id
        limits = alarm.limits
        assert (limits["LowLow"], limits["HighHigh"]) == (low, high)
        assert low < limits["Low"] < limits["High"] < high
    assert alarms["nir.api_pct"].limits["High"] == pytest.approx(10.3)  # 103 % of label claim


def test_process_limits_come_from_the_layout(alarms: dict[str, AlarmDef]) -> None:
    plant = Plant(seed=1)
    feeder = next(m for m in plant.layout.modules if m.type == "feeder")
    hopper = alarms[f"{feeder.id}.hopper_mass"]
    assert hopper.limits == {"Low": feeder.params.refill_level_kg}
    assert hopper.on_delay_s > 0


def test_faults_and_diagnoses_are_discrete_alarms_with_priorities(
    alarms: dict[str, AlarmDef],
) -> None:
    assert alarms["equipment.diverter_stuck"].priority is Priority.CRITICAL
    assert alarms["line.faulted"].kind is Kind.DISCRETE
    assert alarms["controller.nir_bias"].origin is Origin.CONTROLLER
    assert alarms["controller.stale_telemetry"].origin is Origin.CONTROLLER


def test_a_level_is_raised_only_after_its_on_delay(alarms: dict[str, AlarmDef]) -> None:
    s = state(alarms, "nir.api_pct")  # on delay 4 s, H 10.3, HH 10.5
    assert s.observe(0.0, 10.4) == []
    assert s.observe(2.0, 10.4) == []
    made = s.observe(4.0, 10.4)
    assert [t.action for t in made] == ["raise"]
    assert made[0].state.level == "High" and not made[0].state.acked


def test_a_blip_shorter_than_the_on_delay_raises_nothing(alarms: dict[str, AlarmDef]) -> None:
    s = state(alarms, "nir.api_pct")
    made = [*s.observe(0.0, 10.6), *s.observe(2.0, 10.0), *s.observe(4.0, 10.0)]
    assert made == [] and not s.active


def test_a_value_must_cross_back_by_the_deadband_and_stay_for_the_off_delay(
    alarms: dict[str, AlarmDef],
) -> None:
    s = state(alarms, "nir.api_pct")  # deadband 0.05, off delay 4 s
    s.observe(0.0, 10.4)
    s.observe(4.0, 10.4)
    assert s.level == "High"
    assert s.observe(6.0, 10.27) == []  # inside the deadband: still High
    assert s.observe(20.0, 10.27) == []
    assert s.observe(22.0, 10.2) == []  # out, but not for 4 s yet
    assert [t.action for t in s.observe(26.0, 10.2)] == ["clear"]


def test_a_worse_level_must_be_acknowledged_again(alarms: dict[str, AlarmDef]) -> None:
    s = state(alarms, "nir.api_pct")
    s.observe(0.0, 10.4)
    s.observe(4.0, 10.4)
    s.acknowledge(5.0, "alice", "seen")
    s.observe(6.0, 10.6)
    made = s.observe(10.0, 10.6)
    assert [t.action for t in made] == ["level"]
    assert made[0].state.level == "HighHigh" and not made[0].state.acked
    assert made[0].state.priority is Priority.HIGH


def test_acknowledge_and_confirm_follow_part_9(alarms: dict[str, AlarmDef]) -> None:
    s = state(alarms, "equipment.bridging")
    s.set_level(0.0, "Active", "bridging")
    with pytest.raises(LifecycleError) as refused:
        s.confirm(1.0, "alice", "too early")
    assert refused.value.code == "BadInvalidState"
    ack = s.acknowledge(1.0, "alice", "on it")
    assert (ack.user, ack.comment, ack.state.isa_state) == ("alice", "on it", "active_acked")
    with pytest.raises(LifecycleError) as again:
        s.acknowledge(2.0, "bob", "")
    assert again.value.code == "BadConditionBranchAlreadyAcked"
    s.set_level(3.0, None, "cleared")
    assert s.snapshot().retain  # acked and normal, but not confirmed
    s.confirm(4.0, "alice", "checked the feeder")
    assert not s.snapshot().retain and s.snapshot().isa_state == "normal"


def test_an_alarm_that_clears_unacknowledged_stays_until_acknowledged(
    alarms: dict[str, AlarmDef],
) -> None:
    s = state(alarms, "line.faulted")
    s.set_level(0.0, "Active", "tripped")
    s.set_level(1.0, None, "reset")
    assert s.snapshot().isa_state == "rtn_unacked" and s.snapshot().retain


def test_a_one_shot_shelve_ends_when_the_alarm_clears(alarms: dict[str, AlarmDef]) -> None:
    s = state(alarms, "equipment.punch_wear")
    s.set_level(0.0, "Active", "wear")
    shelved = s.shelve(1.0, "alice", "known, maintenance booked", None)
    assert shelved.state.shelving is Shelving.ONE_SHOT and shelved.state.suppressed_or_shelved
    made = s.set_level(5.0, None, "gone")
    assert [t.action for t in made] == ["clear", "unshelve"]
    assert s.shelving is Shelving.UNSHELVED


def test_a_timed_shelve_expires_and_is_bounded(alarms: dict[str, AlarmDef]) -> None:
    s = state(alarms, "equipment.punch_wear")
    with pytest.raises(LifecycleError) as too_long:
        s.shelve(0.0, "alice", "", MAX_TIME_SHELVED_S + 1)
    assert too_long.value.code == "BadShelvingTimeOutOfRange"
    s.shelve(0.0, "alice", "calibration", 600.0)
    assert s.expire(599.0) == []
    assert [t.action for t in s.expire(600.0)] == ["unshelve"]
    with pytest.raises(LifecycleError) as not_shelved:
        s.unshelve(601.0, "alice", "")
    assert not_shelved.value.code == "BadConditionNotShelved"


def test_the_board_ends_timed_shelves_of_every_origin_when_their_time_is_up(
    alarms: dict[str, AlarmDef],
) -> None:
    board = AlarmBoard(alarms.values())
    board.states["controller.nir_bias"].shelve(0.0, "alice", "", 600.0)
    board.states["equipment.punch_wear"].shelve(0.0, "alice", "", 300.0)
    board.states["nir.api_pct"].shelve(0.0, "alice", "", 300.0)
    assert board.evaluate({}, {}, 299.0) == []
    ended = board.evaluate({}, {}, 300.0)
    assert [(t.alarm, t.action) for t in ended] == [
        ("nir.api_pct", "unshelve"),
        ("equipment.punch_wear", "unshelve"),
    ]
    assert [(t.alarm, t.comment) for t in board.evaluate({}, {}, 650.0)] == [
        ("controller.nir_bias", "shelving time elapsed")
    ]
    assert board.evaluate({}, {}, 700.0) == []


def test_out_of_service_is_a_state_of_its_own(alarms: dict[str, AlarmDef]) -> None:
    s = state(alarms, "environment.humidity")
    t = s.remove_from_service(0.0, "alice", "sensor replaced")
    assert t.state.isa_state == "out_of_service" and t.state.suppressed_or_shelved
    with pytest.raises(LifecycleError):
        s.remove_from_service(1.0, "alice", "")
    assert s.place_in_service(2.0, "alice", "back").state.isa_state == "normal"
