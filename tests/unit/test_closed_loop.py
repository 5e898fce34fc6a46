"""The supervisor against the twin, one fault at a time: the response domain.md asks for.

Each case runs the same seed twice, controller on and off (the baseline), and checks that with
the controller no out-of-spec tablet is accepted, that it raised the right alarm, and that it
did what the fault calls for. Where the fault makes out-of-spec tablets by itself, the baseline
must show them escaping, so these tests can fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.campaign import run_campaign
from apps.closed_loop import Link, LoopLog, run
from apps.scenario import Scenario, ScenarioEvent, load_scenario
from controller import Action, ControllerConfig, Supervisor
from core.commands import LineCommand
from core.faults import FaultSpec
from twin import Plant

ROOT = Path(__file__).resolve().parents[2]
ONSET_S = 900.0


@dataclass(frozen=True)
class Case:
    kind: str
    magnitude: float | None
    duration_s: float
    escapes_without_control: bool
    check: Callable[[Plant, LoopLog], None]
    target: str | None = None


def writes(log: LoopLog, tag: str) -> list[float]:
    return [a.value for _, a, r in log.actions if a.target == tag and r.accepted]


def alarmed(log: LoopLog, name: str) -> bool:
    return any(a.name == name and a.raised and a.time >= ONSET_S for a in log.alarms)


def check_refill(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "refill_disturbance")
    assert plant.ledger.mass_diverted_on_command > 0.05


def check_drift(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "feed_factor_drift")


def check_bridging(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "bridging")
    ledger = plant.ledger
    assert ledger.mass_diverted_on_command <= 1.5 * ledger.oos_mass


def check_noise(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "feeder_noise")


def check_load_cell(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "load_cell_drift")
    assert max(writes(log, "api_feeder.mass_flow_sp")) > 2.1  # NIR trims the true flow back


def check_impeller(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "impeller_slowdown")
    assert max(writes(log, "blender.speed_sp")) > 300.0


def check_nir_bias(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "nir_bias")
    trims = writes(log, "api_feeder.mass_flow_sp")
    assert all(abs(v / 2.0 - 1) < 0.03 for v in trims)  # no trimming on a biased probe
    assert plant.ledger.mass_diverted_on_command < 0.1  # and no diverting of good tablets


def check_dropout(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "nir_dropout")
    assert plant.ledger.mass_diverted_on_command < 0.2


def check_density(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "lot_density_change")
    assert min(writes(log, "press.fill_depth_sp")) < 9.5  # the weight loop trims fill depth
    assert plant.state == "producing"


def check_wear(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "punch_wear")
    assert min(writes(log, "press.main_gap_sp")) < 3.5  # the hardness loop tightens the gap


def check_stiction(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "fill_depth_stiction")


def check_turret(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "turret_speed_step")
    assert min(writes(log, "press.turret_speed_sp")) < 22.5  # rebalanced to the feed
    assert plant.state == "producing"


def check_diverter(plant: Plant, log: LoopLog) -> None:
    assert alarmed(log, "diverter_stuck")
    assert any(a.target == "abort" and r.accepted for _, a, r in log.actions)
    assert plant.state == "faulted"
    # Fault 13's response is also "flag the window in genealogy": from the reject command that
    # the gate did not follow to the abort, every tablet that reached accept is held back, so
    # no OOS tablet is released whatever reached accept before the abort.
    reject = next(t for t, a, _ in log.actions if a.value == "reject")
    quarantines = [(t, a, r) for t, a, r in log.actions if a.kind == "quarantine"]
    assert quarantines and all(r.accepted for _, _, r in quarantines)
    t, action, result = quarantines[0]
    assert action.target == "genealogy" and "diverter stuck" in action.reason
    start, end = action.value
    assert start <= reject and end >= t
    assert result.new["tablets"] > 0 and plant.ledger.tablets_quarantined > 0
    passed = [s for s in plant.ledger.slices if not s.diverted and s.time >= reject]
    assert passed and all(s.quarantined for s in passed)
    assert all(s.quarantined for s in plant.ledger.slices if s.oos and not s.diverted)


CASES = [
    Case("refill_disturbance", 0.4, 300, True, check_refill),
    Case("feed_factor_drift", -0.3, 1800, False, check_drift),
    Case("bridging", 0.8, 480, True, check_bridging),
    Case("feeder_noise", 3.0, 1200, False, check_noise, "excipient_feeder"),
    Case("load_cell_drift", 0.1, 1200, True, check_load_cell),
    Case("impeller_slowdown", 0.4, 1200, False, check_impeller),
    Case("nir_bias", 0.8, 1200, False, check_nir_bias),
    Case("nir_dropout", 0.3, 1200, False, check_dropout),
    Case("lot_density_change", 0.08, 0, True, check_density, "excipient_feeder"),
    Case("punch_wear", 0.4, 0, False, check_wear),
    Case("fill_depth_stiction", 0.1, 1200, False, check_stiction),
    Case("turret_speed_step", 1.5, 1200, True, check_turret),
    Case("diverter_stuck", None, 0, True, check_diverter),
]


def campaign(case: Case, controlled: bool, seed: int = 3) -> tuple[Plant, LoopLog]:
    plant = Plant(seed=seed, warm_start=True)
    plant.inject(
        FaultSpec(case.kind, case.target, case.magnitude, case.duration_s, ONSET_S, user="test")
    )
    if case.kind == "diverter_stuck":  # something the seized gate should have rejected
        plant.inject(
            FaultSpec(
                "refill_disturbance",
                magnitude=0.4,
                duration_s=200,
                onset_s=ONSET_S + 60,
                user="test",
            )
        )
    log = run(plant, Supervisor() if controlled else None, 3600.0)
    return plant, log


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_fault_response(case: Case) -> None:
    plant, log = campaign(case, controlled=True)
    assert plant.ledger.oos_accepted_tablets == 0
    assert all(r.accepted for _, _, r in log.actions), [
        (a, r.reason) for _, a, r in log.actions if not r.accepted
    ]
    assert all(a.reason for _, a, _ in log.actions)  # every command says why
    case.check(plant, log)
    baseline, _ = campaign(case, controlled=False)
    if case.escapes_without_control:
        assert baseline.ledger.oos_accepted_tablets > 0


class WithoutQuarantine(Supervisor):
    """The supervisor as it was before fault 13's genealogy flag: abort only."""

    def step(self, now: float) -> list[Action]:
        return [a for a in super().step(now) if a.kind != "quarantine"]


@pytest.mark.parametrize("flag", [True, False], ids=["quarantine", "abort only"])
def test_oos_tablets_past_a_stuck_gate_are_held_back_by_the_quarantine(flag: bool) -> None:
    """A slower stuck verdict (the gate given 20 s to report reject) lets OOS tablets reach
    accept before the abort: the quarantine, not the timing, keeps them from being released."""
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("diverter_stuck", onset_s=ONSET_S, user="test"))
    plant.inject(
        FaultSpec("refill_disturbance", magnitude=0.4, duration_s=200, onset_s=ONSET_S + 60)
    )
    kind = Supervisor if flag else WithoutQuarantine
    log = run(plant, kind(ControllerConfig(gate_confirm_s=20.0)), 1800.0)
    assert any(a.target == "abort" and r.accepted for _, a, r in log.actions)
    ledger = plant.ledger
    escaped = ledger.oos_quarantined_tablets + ledger.oos_accepted_tablets
    assert escaped > 100  # OOS tablets did reach accept before the line stopped
    if flag:
        assert ledger.oos_accepted_tablets == 0
        assert plant.read("diverter.true_oos_accepted") == 0
        assert plant.read("diverter.true_oos_quarantined") == round(escaped)
    else:
        assert ledger.oos_accepted_tablets == escaped > 0


def test_a_gate_stuck_at_accept_while_the_line_holds_it_quarantines_the_run_out() -> None:
    plant = Plant(seed=3, warm_start=True)
    run(plant, Supervisor(), 300.0)
    plant.inject(FaultSpec("diverter_stuck", user="test"))
    assert plant.apply(LineCommand("stop", reason="end of campaign")).accepted
    log = run(plant, Supervisor(), 600.0)
    kinds = [(a.kind, a.target) for _, a, _ in log.actions]
    assert kinds == [("line", "abort"), ("quarantine", "genealogy")]
    start, end = log.actions[1][1].value
    assert start < 300.0 < end and log.actions[1][2].accepted
    run_out = [s for s in plant.ledger.slices if s.time > 300.0 and not s.diverted]
    assert run_out and all(s.quarantined for s in run_out)


def test_commands_go_through_the_audited_command_path() -> None:
    plant, log = campaign(CASES[0], controlled=True)
    by_controller = [r for r in plant.audit if r.user == "controller"]
    assert len(by_controller) == len(log.actions) > 0
    assert all(r.reason for r in by_controller)


def test_a_disabled_controller_only_watches() -> None:
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("bridging", magnitude=0.8, onset_s=600, duration_s=300))
    supervisor = Supervisor(enabled=False)
    log = run(plant, supervisor, 1800.0)
    assert log.actions == []
    assert alarmed(log, "bridging") or any(a.name == "bridging" for a in log.alarms)
    assert plant.ledger.oos_accepted_tablets > 0
    # It asked the gate for nothing, so a gate that stays put is no news.
    assert not any(a.name == "diverter_stuck" for a in log.alarms)


@pytest.mark.parametrize("step_s", [2.0, 3.0])
def test_telemetry_every_few_plant_seconds_changes_no_diagnosis(step_s: float) -> None:
    """At speed 20 the OPC UA server publishes every 2 plant seconds or so (more under load):
    the supervisor decides less often, on thinned telemetry. Found in the acceptance test: it
    then took a NIR bias for a drifting load cell and trimmed the true blend out of spec."""
    scenario = load_scenario(ROOT / "scenarios" / "four_faults.yaml")
    run = run_campaign(scenario, controlled=True, step_s=step_s)
    raised = {a.name for a in run.log.alarms if a.raised}
    assert "nir_bias" in raised
    assert "load_cell_drift" not in raised and "diverter_stuck" not in raised
    assert run.plant.ledger.oos_accepted_tablets == 0


@pytest.mark.parametrize("link", ["2.5:2.5:5:0.6:1", "5:5:10:0.6:2"])
def test_through_the_running_stacks_timing_no_oos_tablet_is_released(link: str) -> None:
    """The acceptance run at 50x real time decides on a publication every 2.5 plant seconds or
    more, late, and its commands land later still (`Link`: publication, telemetry lag, command
    latency, jitter, seed). Found there: a refill's rising edge (28 and 42 tablets) and a
    denser lot's weight ramp (864) escaped a controller that was clean in process."""
    scenario = load_scenario(ROOT / "scenarios" / "acceptance.yaml")
    result = run_campaign(scenario, controlled=True, link=Link.parse(link))
    assert result.plant.ledger.oos_accepted_tablets == 0


#: (link, what the controller did before it quarantined what a late reject let through and
#: judged the gate only once its command had landed, late rejects quarantined now)
STALLS = [
    ("2.5:2.5:5:0.6:2:600:100", "108 released; the line stopped: 'does not move to accept'", 0),
    ("2.5:2.5:5:0.6:2:600:200", "2,067 released", 1),
    ("2.5:2.5:5:0.6:1:600:150", "159 released; the line stopped: 'does not move to accept'", 1),
    ("2.5:2.5:5:0.6:6:600:100", "the line aborted: 'does not move to reject'", 3),
]


@pytest.mark.parametrize(("link", "before", "late_rejects"), STALLS, ids=[s[0] for s in STALLS])
def test_a_stalled_controller_releases_no_oos_tablet_and_blames_no_gate(
    link: str, before: str, late_rejects: int
) -> None:
    """A CI machine's neighbours stalled the acceptance run's controller for seconds at 50x
    (`Link`'s last two figures: every 600 plant s it reads nothing for 100-200, then all of it at
    once). Working through the backlog it decided on telemetry from before its own commands
    could have landed: it took the gate for stuck and stopped or aborted the line, and its
    rejects landed 100 plant s late, after the tablets had gone to accept."""
    scenario = load_scenario(ROOT / "scenarios" / "acceptance.yaml")
    result = run_campaign(scenario, controlled=True, link=Link.parse(link))
    released = result.plant.ledger.oos_accepted_tablets
    assert released == 0, f"{released:.0f} OOS tablets released (before the fix: {before})"
    seized = next(e.at_s for e in scenario.events if e.kind == "diverter_stuck")
    blamed = [a for a in result.log.alarms if a.name == "diverter_stuck" and a.time < seized]
    assert not blamed, f"a sound gate judged stuck: {blamed[0].message} ({before})"
    late = [r for _, a, r in result.log.actions if a.kind == "quarantine" and "late" in a.reason]
    assert bool(late) == bool(late_rejects) and all(r.accepted for r in late)


def test_a_link_with_a_stall_reads_nothing_during_it() -> None:
    link = Link.parse("2.5:2.5:5:0:0:600:100")
    assert link.stalled_until(130.0, phase=100.0) == 200.0  # inside the first stall: its end
    assert link.stalled_until(250.0, phase=100.0) == 250.0  # between two stalls: at once
    assert link.stalled_until(760.0, phase=100.0) == 800.0  # inside the second
    assert Link.parse("2.5:2.5:5").stalled_until(130.0, phase=100.0) == 130.0
    for bad in ("2.5:2.5", "2.5:2.5:5:0:0:600", "2.5:2.5:5:0:0:100:100", "0:2.5:5", "2.5:-1:5"):
        with pytest.raises(ValueError):
            Link.parse(bad)


def test_a_fill_depth_actuator_left_still_is_stroked_and_its_stiction_found() -> None:
    """On target the weight loop asks for moves smaller than any stiction band worth finding:
    an actuator left still for `stroke_idle_s` is stroked, and a sticking one does not follow.
    (A wide weight deadband keeps the weight loop from moving it at all.)"""
    cfg = ControllerConfig(weight_deadband_mg=5.0)
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("fill_depth_stiction", magnitude=0.2, duration_s=900, onset_s=ONSET_S))
    log = run(plant, Supervisor(cfg), ONSET_S + 900.0)
    raised = [a.time for a in log.alarms if a.name == "fill_depth_stiction" and a.raised]
    assert raised and raised[0] < ONSET_S + cfg.stroke_idle_s + 2 * cfg.stiction_confirm_s
    strokes = [a for _, a, r in log.actions if "stroke test" in a.reason and r.accepted]
    assert any("did not follow" in a.reason for a in strokes)
    assert plant.ledger.oos_accepted_tablets == 0
    # A sound actuator follows the stroke and is put back at once: no alarm, no diversion.
    plant = Plant(seed=3, warm_start=True)
    log = run(plant, Supervisor(cfg), 2400.0)
    assert not any(a.name == "fill_depth_stiction" for a in log.alarms)
    assert any("it followed" in a.reason for _, a, _ in log.actions)
    assert plant.ledger.mass_diverted_on_command == 0.0


def test_a_stroke_is_measured_from_where_the_actuator_is_not_where_it_was_asked_to_be() -> None:
    """A step the actuator has not made (under `stiction_mm`, so no mismatch) would add to the
    stroke and carry it over a band wider than the stroke (random campaign 202 compound: a
    0.0552-mm band, the setpoint 0.007 mm ahead; a 0.057-mm stroke slipped it: "followed")."""
    cfg = ControllerConfig()
    sv = Supervisor(cfg)
    loops, shared = sv.loops, sv.shared
    shared.depth_sp, shared.depth_pv = 10.007, 10.0  # the last 0.007-mm step not made
    loops.depth_pv, loops.still_since = 10.0, 0.0
    actions: list[Action] = []
    assert loops._stroke_test(cfg.stroke_idle_s + 1.0, actions)
    assert [a.value for a in actions] == [round(10.0 + cfg.stroke_mm, 4)]
    shared.depth_sp = actions[0].value  # it stays where it stuck
    actions.clear()
    assert loops._stroke_test(cfg.stroke_idle_s + 2.0 + cfg.stiction_confirm_s + 10.0, actions)
    assert [(a.value, "did not follow" in a.reason) for a in actions] == [(10.007, True)]


def test_a_re_tared_load_cell_is_believed_at_once_and_its_compensation_eased_off() -> None:
    """A drifting load cell's reading of the hopper jumps back when it is re-tared: the
    diagnosis clears in the same decision, not once the drift test clears. The compensation
    comes off as the feeder relearns its feed factor: it still drives by the one it learnt
    from the drifting cell. Taken off at once, the blend fell to 91.9 % LC after the re-tare
    here (1.4 kg out of spec, diverted)."""
    plant = Plant(seed=3, warm_start=True, keep_slices=None)
    plant.inject(FaultSpec("load_cell_drift", magnitude=0.2, duration_s=1200, onset_s=ONSET_S))
    log = run(plant, Supervisor(), ONSET_S + 1800.0)
    end = ONSET_S + 1200.0
    raised = [a.time for a in log.alarms if a.name == "load_cell_drift" and a.raised]
    assert raised and raised[0] < end
    cleared = [a.time for a in log.alarms if a.name == "load_cell_drift" and not a.raised]
    assert cleared and end <= cleared[0] <= end + 3.0
    eased = [t for t, a, r in log.actions if "re-tared, its feeder's" in a.reason and r.accepted]
    back = [t for t, a, r in log.actions if "reads true again" in a.reason and r.accepted]
    assert eased and back and end <= eased[0] < back[0]
    assert back[0] <= end + ControllerConfig().retare_relearn_s
    after = [s.content_pct for s in plant.ledger.slices if end <= s.time <= end + 400]
    assert min(after) > 97.0, min(after)
    assert plant.ledger.oos_accepted_tablets == 0


def test_a_stop_while_the_feeder_relearns_takes_the_compensation_off() -> None:
    """Stopped, the feeder learns nothing: the restart's blend is made with the recipe's
    setpoints, not a compensation for a cell re-tared before the stop (random campaign 87: kept
    through a stop, it made 0.6 kg of start-up blend at 86-97 % LC)."""
    events = (
        ScenarioEvent(at_s=ONSET_S, action="fault", kind="load_cell_drift", magnitude=0.2),
        ScenarioEvent(at_s=ONSET_S + 1200.0, action="clear", kind="load_cell_drift"),
        ScenarioEvent(at_s=ONSET_S + 1205.0, action="line", line="stop", reason="test"),
    )
    scenario = Scenario(name="re-tare, stop", seed=3, hours=2400.0 / 3600.0, events=events)
    result = run_campaign(scenario, controlled=True)
    stop = ONSET_S + 1205.0
    cleared = [a.time for a in result.log.alarms if a.name == "load_cell_drift" and not a.raised]
    assert cleared and cleared[0] < stop  # re-tared, and the feeder relearning at the stop
    back = [t for t, a, r in result.log.actions if "reads true again" in a.reason and r.accepted]
    assert back and stop <= back[0] <= stop + 3.0
    # The recipe's 10 % of 20 kg/h (the compensation was +14.8 %), where the restart begins
    assert result.plant.read("api_feeder.mass_flow_sp") == pytest.approx(2.0, abs=0.002)
    assert result.plant.state == "stopped"


def test_a_suspect_probe_that_steps_back_by_its_offset_is_believed_again() -> None:
    """A probe bias under the spike test's size (-0.45 % w/w) is found by the small-step
    test; its end, a step back by the offset with the feeders still, is found the same way.
    Believed only when the averaged gap had come back, it cleared 127 s after the end, and
    the blend judged by the probe less its offset (5 % LC high) was diverted meanwhile
    (random campaign 16 compound)."""
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("nir_bias", magnitude=-0.45, duration_s=600, onset_s=900))
    log = run(plant, Supervisor(), 2400.0)
    assert raised_between(log, "nir_bias", 900, 960)
    cleared = [a for a in log.alarms if a.name == "nir_bias" and not a.raised]
    assert cleared and 1500 <= cleared[0].time <= 1530, cleared
    assert "stepped back" in cleared[0].message
    assert not raised_between(log, "estimates_disagree", 1500, 2400)
    assert plant.ledger.oos_accepted_tablets == 0


def test_a_gate_seized_at_reject_is_reported_and_the_line_stopped_not_aborted() -> None:
    """Nothing escapes a gate stuck at reject, but every tablet is lost while it sticks."""
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("refill_disturbance", magnitude=0.5, duration_s=180, onset_s=900))
    plant.inject(FaultSpec("diverter_stuck", duration_s=0, onset_s=1000))  # while diverting
    log = run(plant, Supervisor(), 1800.0)
    lines = [(t, a) for t, a, r in log.actions if a.kind == "line" and r.accepted]
    assert [a.target for _, a in lines] == ["stop"]
    assert "stuck at reject" in lines[0][1].reason
    assert any(a.name == "diverter_stuck" and a.raised for a in log.alarms)
    assert plant.state == "stopped" and plant.ledger.oos_accepted_tablets == 0


def test_a_slow_impellers_hold_up_is_drained_without_overflowing_the_feed_frame() -> None:
    """A 90 % impeller slowdown builds the blender's hold-up 3.5-fold (the restart after the
    starved press's trip runs on with it); when the impeller comes back the controller holds it
    down so the hold-up drains at what the press takes. Random campaign 3: without that the
    feed frame overflowed within 18 s, and every restart tripped again on it."""
    faults = (
        ScenarioEvent(at_s=300.0, action="fault", kind="impeller_slowdown", magnitude=0.9),
        ScenarioEvent(at_s=1500.0, action="clear", kind="impeller_slowdown"),
    )
    scenario = Scenario(name="impeller", seed=3, hours=2400.0 / 3600.0, events=faults)
    result = run_campaign(scenario, controlled=True, restart_after_s=120.0)
    states = [e for e in result.plant.events if e.kind == "state"]
    assert not any("overflow" in e.message for e in states), states
    assert result.plant.state in ("producing", "diverting")
    drained = [t for t, a, r in result.log.actions if "hold-up drains" in a.reason and r.accepted]
    assert drained and 1500.0 <= drained[0] <= 1503.0
    assert result.plant.read("blender.speed_sp") == ControllerConfig().blender_speed_rpm
    assert result.plant.ledger.oos_accepted_tablets == 0


def test_a_slow_impeller_restored_late_drains_at_its_own_speed_not_its_setpoints() -> None:
    """A 40 % impeller slowdown met through the stack's lag (telemetry 10 s old, commands 20 s
    on the way): the hold-up built before the drive was restored to 400 rpm dumps at 27 kg/h,
    over the drain's 26. The drain held the setpoint at 210-250 rpm, which the slow drive ran at
    130-150: the hold-up built up again, the restore dumped it again, and the press swung
    between 12.5 and 35 rpm until the slowdown ended (through the running stack, its hopper ran
    dry: 298 OOS tablets released in the acceptance run's slowdown window, then a starved
    trip). Held at the impeller's own speed, it drains once, within a minute."""
    plant = Plant(seed=0, warm_start=True)
    plant.inject(FaultSpec("impeller_slowdown", magnitude=0.4, duration_s=300, onset_s=600))
    seen: list[tuple[float, float, float]] = []

    def watch(now: float) -> None:
        seen.append((now, plant.read("blender.speed_pv"), plant.read("press.turret_speed_sp")))

    log = run(plant, Supervisor(), 900.0, each_step=watch, link=Link.parse("2.5:10:20"))
    drains = [t for t, a, r in log.actions if "hold-up drains" in a.reason and r.accepted]
    assert drains and drains[-1] - drains[0] < 60.0, drains  # it drained once, and not for long
    after = [(pv, turret) for t, pv, turret in seen if drains[0] <= t < 900.0]
    assert min(pv for pv, _ in after) > 200.0  # the impeller near its validated 250 rpm
    assert min(turret for _, turret in after) > 18.0  # the press never slowed for a new hold-up
    assert plant.ledger.oos_accepted_tablets == 0


def raised_between(log: LoopLog, name: str, start: float, end: float) -> list[float]:
    return [a.time for a in log.alarms if a.name == name and a.raised and start <= a.time <= end]


def test_a_bridge_soon_after_a_refill_is_a_bridge_not_a_drift() -> None:
    """The API feeder's refill ends at 5,425 s on this seed (its densified powder's feed factor
    falls back for minutes after it, but toward its usual, not under it). A 14 % bridge 92 s
    later fell in the refill's quiet time and was learnt as a feed factor drift (random
    campaign 79)."""
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("bridging", magnitude=0.14, duration_s=350, onset_s=5517))
    log = run(plant, Supervisor(), 6300.0)
    api_refills = [e.time for e in plant.events if e.module == "api_feeder" and e.kind == "refill"]
    assert api_refills[:2] == [5404.0, 5425.0]  # (the seed still puts the refill there)
    assert raised_between(log, "bridging", 5517, 5517 + 120)
    assert not raised_between(log, "feed_factor_drift", 5517, 6300)


def test_a_new_lots_density_under_a_bridge_the_drive_copes_with_is_seen() -> None:
    """A bridge the drive copes with leaves the blend as it was: a 5 % denser excipient lot
    under it is judged by the density test's own 2 % limit, not the 8 % of a blend a starved
    feeder made lean (random campaign 68 compound: a +4.2 % shift never raised)."""
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("bridging", magnitude=0.23, duration_s=800, onset_s=1500))
    plant.inject(
        FaultSpec("lot_density_change", "excipient_feeder", 0.05, duration_s=400, onset_s=1660)
    )
    log = run(plant, Supervisor(), 2400.0)
    assert raised_between(log, "bridging", 1500, 1600)  # the bridge is there, and seen
    assert raised_between(log, "lot_density_change", 1660, 2100)
