"""Twin and supervisor in one process, stepped together: accelerated closed-loop runs.

This is the in-process adapter of the controller: each second of plant time it hands the
supervisor the tags a real plant shows (the snapshot without ground truth) and carries its
commands back through the twin's command path (`Plant.apply`, the same entry point the OPC UA
server writes through), as user `controller`. The running stack replaces it with MQTT.

With a `Link` the loop is a cheap proxy of the running stack's timing: the supervisor sees a
snapshot only every `publish_s` (the OPC UA server's publication period, in plant seconds), a
`telemetry_lag_s` after its source time, and its commands reach the twin `command_latency_s`
after the decision. The distributed acceptance run at 50x real time publishes every 2.5 plant s;
a decision taken on a step-by-step loop and not on the plant's clock shows here, in process.
Its stalls (`stall_every_s`, `stall_s`) are a starved controller's: nothing read for a while,
then the backlog at once, each snapshot decided as far behind the plant as it is.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from controller import Action, Alarm, Supervisor
from core.commands import CommandResult, LineAction, LineCommand, QuarantineCommand, SetpointCommand
from twin import Plant

CONTROLLER_USER = "controller"


@dataclass(frozen=True, slots=True)
class Link:
    """The running stack's timing, in plant seconds, for the in-process proxy of it."""

    publish_s: float = 2.5  # between two publications (0.05 wall s at 50x, the acceptance run)
    telemetry_lag_s: float = 2.5  # a snapshot reaches the controller this long after its time
    command_latency_s: float = 5.0  # a command reaches the twin this long after the decision
    jitter: float = 0.0  # each period and delay drawn from (1 +- jitter) x its value: a loaded
    # machine's ticks are late, some much later (0.5: 1.25-3.75 plant s for 2.5)
    seed: int = 0  # of the jitter's draws
    # A starved controller: every `stall_every_s` (at a phase drawn from the seed) it reads
    # nothing for `stall_s`, then everything that came meanwhile at once (a CI machine's
    # neighbours took both cores for 2 wall s: 100 plant s at 50x).
    stall_every_s: float = 0.0
    stall_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Link:
        """`PUBLISH:LAG:LATENCY[:JITTER[:SEED[:STALL_EVERY:STALL]]]` in plant seconds, e.g.
        `2.5:2.5:5:0.5:1` or, with a 100 s stall every 10 min, `2.5:2.5:5:0.5:1:600:100`."""
        parts = text.split(":")
        if len(parts) not in (3, 4, 5, 7):
            raise ValueError(f"{text!r}: PUBLISH:LAG:LATENCY[:JITTER[:SEED[:STALL_EVERY:STALL]]]")
        publish, lag, latency = (float(x) for x in parts[:3])
        jitter = float(parts[3]) if len(parts) > 3 else 0.0
        seed = int(parts[4]) if len(parts) > 4 else 0
        every, stall = (float(x) for x in parts[5:7]) if len(parts) == 7 else (0.0, 0.0)
        if min(publish, lag, latency, jitter, seed, every, stall) < 0 or publish == 0:
            raise ValueError(f"{text!r}: every figure non-negative, the publication period above 0")
        if stall and stall >= every:
            raise ValueError(f"{text!r}: a stall must be shorter than the time between two")
        return cls(publish, lag, latency, jitter, seed, every, stall)

    def stalled_until(self, due: float, phase: float) -> float:
        """When a delivery due at `due` is read: at once, or at the end of the stall it falls in
        (stall k spans `phase + k * stall_every_s` and `stall_s` after)."""
        if not self.stall_s:
            return due
        into = (due - phase) % self.stall_every_s
        return due - into + self.stall_s if into < self.stall_s else due


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


def carried_out(plant: Plant, supervisor: Supervisor, action: Action) -> CommandResult:
    """`carry_out`, telling the supervisor of a command the plant refused (its reply)."""
    result = carry_out(plant, action)
    if not result.accepted:
        supervisor.command_failed(action, result.code)
    return result


def run(
    plant: Plant,
    supervisor: Supervisor | None,
    until_s: float,
    *,
    step_s: float = 1.0,
    each_step: Callable[[float], None] | None = None,
    log: LoopLog | None = None,
    link: Link | None = None,
) -> LoopLog:
    """Advance the plant to `until_s`, letting the supervisor act once per step (or, with a
    `link`, once per publication, late, and its commands later still)."""
    log = log if log is not None else LoopLog()
    if link is not None:
        return _run_linked(plant, supervisor, until_s, link, each_step, log)
    t = plant.now
    while t < until_s:
        t += step_s
        t = t if t < until_s else until_s  # min(until_s, t + step_s), by comparison
        plant.advance(t)
        if each_step is not None:
            each_step(t)
        if supervisor is None:
            continue
        supervisor.observe_plant(plant.store.show, plant.store.newest_shown())
        for action in supervisor.step(t):
            log.actions.append((t, action, carried_out(plant, supervisor, action)))
        log.alarms.extend(supervisor.take_alarms())
    return log


def _run_linked(
    plant: Plant,
    supervisor: Supervisor | None,
    until_s: float,
    link: Link,
    each_step: Callable[[float], None] | None,
    log: LoopLog,
) -> LoopLog:
    """`run` through a `Link`: snapshots delivered late, commands carried out later."""
    # (due, source time, readings, their newest source time)
    inbox: deque[tuple[float, float, dict[str, Any], float]] = deque()
    outbox: list[tuple[float, int, Action]] = []  # (due, order, action)
    draw = random.Random(link.seed)
    # Its own draw, so that the jitter's stay what they were without stalls.
    phase = random.Random(link.seed).uniform(0.0, link.stall_every_s) if link.stall_s else 0.0

    def jittered(value: float) -> float:
        return value * (1.0 + link.jitter * draw.uniform(-1.0, 1.0)) if link.jitter else value

    t, sent = plant.now, 0
    last_due = t
    while t < until_s:
        # Commands that have arrived are carried out between two ticks, as the server does.
        if outbox:
            outbox.sort(key=lambda o: (o[0], o[1]))
            while outbox and outbox[0][0] <= t:
                action = outbox.pop(0)[2]
                assert supervisor is not None  # (only a supervisor's commands are in the outbox)
                log.actions.append((t, action, carried_out(plant, supervisor, action)))
        t = min(until_s, t + jittered(link.publish_s))
        plant.advance(t)
        if each_step is not None:
            each_step(t)
        if supervisor is None:
            continue
        due = link.stalled_until(
            max(t + jittered(link.telemetry_lag_s), inbox[-1][0] if inbox else t), phase
        )
        inbox.append((due, t, plant.store.readings(), plant.store.newest_shown()))
        while inbox and inbox[0][0] <= t + 1e-9:
            _, source_time, readings, newest = inbox.popleft()
            supervisor.observe_all(readings, newest)
            supervisor.behind_s = t - source_time
            actions = supervisor.step(source_time)
            if actions:
                # The reply comes back like telemetry: the round trip the service measures.
                # In order, as one MQTT session and one edge carry them.
                latency = max(jittered(link.command_latency_s), last_due - t)
                supervisor.note_command_latency(latency + link.telemetry_lag_s)
                # One batch of commands is carried out in order, as the edge sends them.
                last_due = t + latency
                outbox.extend((last_due, sent + i, a) for i, a in enumerate(actions))
                sent += len(actions)
            log.alarms.extend(supervisor.take_alarms())
    return log
