"""Run a scenario against the twin, with or without the supervisory controller, in one process.

The scenario's events are carried out at their times as user `scenario`; an operator policy
resets and restarts a line that has been faulted for `restart_after_s`, in both runs alike, so a
baseline that trips is not simply idle for the rest of the campaign.

The pod's alarms (`core.alarms`) are evaluated every step as the OPC UA server evaluates them,
the controller's diagnoses included, so `plant kpi` can measure the alarm load an operator
would have had; nobody acknowledges or shelves in a campaign.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from apps.closed_loop import Link, LoopLog, run
from apps.scenario import Scenario, ScenarioEvent
from apps.scenario_player import TwinTarget, carry_out_now
from controller import ControllerConfig, Supervisor
from core.alarms import AlarmBoard, Transition, build_alarms
from core.commands import LineCommand
from twin import Plant

SCENARIO_USER = "scenario"
OPERATOR_USER = "operator"


@dataclass(slots=True)
class CampaignRun:
    scenario: Scenario
    controlled: bool
    plant: Plant
    log: LoopLog
    results: list[tuple[float, ScenarioEvent, str]]
    alarm_transitions: list[Transition]


def _last_state_change(plant: Plant) -> str:
    for event in reversed(plant.events):
        if event.kind == "state":
            return event.message
    return ""


def run_campaign(
    scenario: Scenario,
    *,
    controlled: bool,
    seed: int | None = None,
    config: ControllerConfig | None = None,
    restart_after_s: float = 600.0,
    step_s: float = 1.0,
    link: Link | None = None,
    alarm_board: bool = True,
) -> CampaignRun:
    """Run `scenario`; without `alarm_board` the pod's alarms are not evaluated (no
    `alarm_transitions`: `bench.closed_loop` times the loop of twin and controller alone)."""
    plant = Plant(
        seed=scenario.seed if seed is None else seed,
        warm_start=scenario.warm_start,
        keep_slices=None,
    )
    if not scenario.warm_start:
        plant.apply(LineCommand("start", OPERATOR_USER, "campaign start"))
    pending = list(scenario.events)
    target = TwinTarget(plant, SCENARIO_USER)
    results: list[tuple[float, ScenarioEvent, str]] = []
    faulted_since: list[float] = []
    scenario_stop = [False]  # the scenario's own last line command stopped the line
    board = AlarmBoard(build_alarms(plant.layout.modules, plant.registry))
    # The board reads only its alarms' source tags (what a real plant shows of them): each
    # step's snapshot holds just those.
    registry = plant.registry
    sources = sorted(
        {
            s.alarm.source
            for s in board.states.values()
            if s.alarm.source in registry and not registry[s.alarm.source].ground_truth
        }
    )
    transitions: list[Transition] = []
    log = LoopLog()
    reported = [0]  # controller alarms already reported to the board

    def alarms(now: float) -> None:
        faults = {
            f.kind: f"fault {f.kind} on {f.target}" for f in plant.faults() if f.status == "active"
        }
        transitions.extend(board.evaluate(plant.store.samples_of(sources), faults, now))
        for alarm in log.alarms[reported[0] :]:
            with contextlib.suppress(KeyError):  # a diagnosis without an alarm of its own
                transitions.extend(board.report(alarm.name, alarm.raised, alarm.message, now))
        reported[0] = len(log.alarms)

    def each_step(now: float) -> None:
        if alarm_board:
            alarms(now)
        while pending and pending[0].at_s <= now:
            event = pending.pop(0)
            results.append((now, event, carry_out_now(target, event)))
            if event.action == "line":
                scenario_stop[0] = event.line in ("stop", "abort", "reset")
        state = plant.state  # (read once: nothing below changes it before the restart)
        aborted = state == "faulted" and "abort command" in _last_state_change(plant)
        # A controller's stop (it says why in the audit trail) is looked into and the line
        # restarted, as after a trip; an emergency stop waits for the people who fix its cause
        # (scenario events).
        stopped = state == "stopped" and not scenario_stop[0]
        if (state != "faulted" or aborted) and not stopped:
            faulted_since.clear()
        elif not faulted_since:
            faulted_since.append(now)
        elif now - faulted_since[0] >= restart_after_s:
            why = "restart after a stop" if stopped else "restart after a trip"
            if not stopped:
                plant.apply(LineCommand("reset", OPERATOR_USER, why))
            plant.apply(LineCommand("start", OPERATOR_USER, why))
            faulted_since.clear()

    supervisor = Supervisor(config) if controlled else None
    run(
        plant,
        supervisor,
        scenario.hours * 3600.0,
        step_s=step_s,
        each_step=each_step,
        log=log,
        link=link,
    )
    if alarm_board:
        alarms(plant.now)
    return CampaignRun(
        scenario=scenario,
        controlled=controlled,
        plant=plant,
        log=log,
        results=results,
        alarm_transitions=transitions,
    )
