"""Run a scenario against the twin, with or without the supervisory controller, in one process.

The scenario's events are carried out at their times as user `scenario`; an operator policy
resets and restarts a line that has been faulted for `restart_after_s`, in both runs alike, so a
baseline that trips is not simply idle for the rest of the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller import ControllerConfig, Supervisor
from plant.closed_loop import LoopLog, run
from plant.scenario import Scenario, ScenarioEvent
from twin import FaultSpec, LineCommand, Plant, SetpointCommand
from twin.commands import CommandResult

SCENARIO_USER = "scenario"
OPERATOR_USER = "operator"


@dataclass(slots=True)
class CampaignRun:
    scenario: Scenario
    controlled: bool
    plant: Plant
    log: LoopLog
    results: list[tuple[float, ScenarioEvent, str]]


def carry_out(plant: Plant, event: ScenarioEvent, user: str = SCENARIO_USER) -> str:
    """Carry out one scenario event on the twin; returns what happened, in words."""
    reason = event.reason or "scenario"
    if event.action == "fault":
        spec = FaultSpec(
            event.kind, event.target, event.magnitude, event.duration_s, user=user, reason=reason
        )
        injected = plant.inject(spec)
        return "injected" if injected.accepted else f"refused: {injected.reason}"
    if event.action == "clear":
        for fault in plant.faults():
            if fault.kind == event.kind and event.target in (None, fault.target):
                cleared = plant.clear(fault.id, user=user, reason=reason)
                return "cleared" if cleared.accepted else f"refused: {cleared.reason}"
        return f"no active {event.kind} to clear"
    result: CommandResult
    if event.action == "setpoint":
        result = plant.apply(SetpointCommand(event.tag, event.value, user, reason))
    else:
        result = plant.apply(LineCommand(event.line, user, reason))  # type: ignore[arg-type]
    return "accepted" if result.accepted else f"refused: {result.reason}"


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
) -> CampaignRun:
    plant = Plant(
        seed=scenario.seed if seed is None else seed,
        warm_start=scenario.warm_start,
        keep_slices=None,
    )
    if not scenario.warm_start:
        plant.apply(LineCommand("start", OPERATOR_USER, "campaign start"))
    pending = list(scenario.events)
    results: list[tuple[float, ScenarioEvent, str]] = []
    faulted_since: list[float] = []
    scenario_stop = [False]  # the scenario's own last line command stopped the line

    def each_step(now: float) -> None:
        while pending and pending[0].at_s <= now:
            event = pending.pop(0)
            results.append((now, event, carry_out(plant, event)))
            if event.action == "line":
                scenario_stop[0] = event.line in ("stop", "abort", "reset")
        aborted = plant.state == "faulted" and "abort command" in _last_state_change(plant)
        # A controller's stop (it says why in the audit trail) is looked into and the line
        # restarted, as after a trip; an emergency stop waits for the people who fix its cause
        # (scenario events).
        stopped = plant.state == "stopped" and not scenario_stop[0]
        if (plant.state != "faulted" or aborted) and not stopped:
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
    log = run(plant, supervisor, scenario.hours * 3600.0, step_s=step_s, each_step=each_step)
    return CampaignRun(scenario, controlled, plant, log, results)
