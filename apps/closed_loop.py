"""Twin and supervisor in one process, stepped together: accelerated closed-loop runs.

This is the in-process adapter of the controller: each second of plant time it hands the
supervisor the tags a real plant shows (the snapshot without ground truth) and carries its
commands back through the twin's command path (`Plant.apply`, the same entry point the OPC UA
server writes through), as user `controller`. The running stack replaces it with MQTT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from controller import Action, Alarm, Supervisor
from core.commands import CommandResult, LineAction, LineCommand, QuarantineCommand, SetpointCommand
from twin import Plant

CONTROLLER_USER = "controller"


@dataclass(slots=True)
class LoopLog:
    """What the controller did and said during a run."""

    actions: list[tuple[float, Action, CommandResult]] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)


def carry_out(plant: Plant, action: Action) -> CommandResult:
    """Send one controller action down the command path."""
    if action.kind == "line":
        command = LineCommand(cast(LineAction, action.target), CONTROLLER_USER, action.reason)
        return plant.apply(command)
    if action.kind == "quarantine":
        start, end = action.value
        return plant.apply(QuarantineCommand(start, end, CONTROLLER_USER, action.reason))
    return plant.apply(
        SetpointCommand(action.target, action.value, user=CONTROLLER_USER, reason=action.reason)
    )


def run(
    plant: Plant,
    supervisor: Supervisor | None,
    until_s: float,
    *,
    step_s: float = 1.0,
    each_step: Callable[[float], None] | None = None,
    log: LoopLog | None = None,
) -> LoopLog:
    """Advance the plant to `until_s`, letting the supervisor act once per step."""
    log = log if log is not None else LoopLog()
    t = plant.now
    while t < until_s:
        t = min(until_s, t + step_s)
        plant.advance(t)
        if each_step is not None:
            each_step(t)
        if supervisor is None:
            continue
        supervisor.observe_all(plant.store.readings())
        for action in supervisor.step(t):
            log.actions.append((t, action, carry_out(plant, action)))
        log.alarms.extend(supervisor.take_alarms())
    return log
