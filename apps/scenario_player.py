"""One scenario player for every plant a scenario can be played on.

A scenario event (`apps.scenario.ScenarioEvent`) is carried out the same way whether the plant
is the twin in this process (`TwinTarget`: accelerated campaigns, `plant kpi`) or a running
server reached over OPC UA (`OpcUaTarget`: `plant fault run`): `carry_out` decides what the
event asks for, the target only knows how to ask its plant. Each answers in words.

The protocol is async because the OPC UA client is. The in-process twin answers at once, so
`carry_out_now` runs the same coroutine to its end without an event loop (a campaign carries
out events between simulation steps thousands of times faster than real time).
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from apps.scenario import ScenarioEvent
from bridge.operator import FaultInfo, OperatorClient, PlantError
from core.commands import LineAction, LineCommand, SetpointCommand
from core.faults import FaultSpec
from twin import Plant

T = TypeVar("T")


class ScenarioTarget(Protocol):
    """What a scenario needs of a plant; each method says what happened."""

    async def inject(
        self, kind: str, target: str | None, magnitude: float | None, duration_s: float, reason: str
    ) -> str: ...

    async def clear(self, kind: str, target: str | None, reason: str) -> str: ...

    async def write(self, tag: str, value: Any, reason: str) -> str: ...

    async def line(self, action: str, reason: str) -> str: ...


async def carry_out(plant: ScenarioTarget, event: ScenarioEvent) -> str:
    """Carry out one scenario event; returns what happened, in words."""
    reason = event.reason or "scenario"
    if event.action == "fault":
        return await plant.inject(
            event.kind, event.target, event.magnitude, event.duration_s, reason
        )
    if event.action == "clear":
        return await plant.clear(event.kind, event.target, reason)
    if event.action == "setpoint":
        return await plant.write(event.tag, event.value, reason)
    return await plant.line(event.line, reason)


def carry_out_now(plant: TwinTarget, event: ScenarioEvent) -> str:
    """`carry_out` on the in-process twin, which never waits: no event loop needed."""
    return _run_to_end(carry_out(plant, event))


def _run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("the in-process twin waited for something")


class TwinTarget:
    """The twin in this process; refusals are answers ("refused: why"), not errors."""

    def __init__(self, plant: Plant, user: str) -> None:
        self.plant, self.user = plant, user

    async def inject(
        self, kind: str, target: str | None, magnitude: float | None, duration_s: float, reason: str
    ) -> str:
        spec = FaultSpec(
            kind=kind,
            target=target,
            magnitude=magnitude,
            duration_s=duration_s,
            user=self.user,
            reason=reason,
        )
        injected = self.plant.inject(spec)
        return "injected" if injected.accepted else f"refused: {injected.reason}"

    async def clear(self, kind: str, target: str | None, reason: str) -> str:
        for fault in self.plant.faults():
            if fault.kind == kind and target in (None, fault.target):
                cleared = self.plant.clear(fault.id, user=self.user, reason=reason)
                return "cleared" if cleared.accepted else f"refused: {cleared.reason}"
        return f"no active {kind} to clear"

    async def write(self, tag: str, value: Any, reason: str) -> str:
        result = self.plant.apply(SetpointCommand(tag, value, self.user, reason))
        return "accepted" if result.accepted else f"refused: {result.reason}"

    async def line(self, action: str, reason: str) -> str:
        command = LineCommand(_line_action(action), self.user, reason)
        result = self.plant.apply(command)
        return "accepted" if result.accepted else f"refused: {result.reason}"


class OpcUaTarget:
    """A running plant over OPC UA, as the client's user; a refusal raises `PlantError`."""

    def __init__(self, client: OperatorClient) -> None:
        self.client = client

    async def inject(
        self, kind: str, target: str | None, magnitude: float | None, duration_s: float, reason: str
    ) -> str:
        fault_id = await self.client.inject(kind, target or "", magnitude, duration_s, reason)
        return f"fault {fault_id}"

    async def clear(self, kind: str, target: str | None, reason: str) -> str:
        cleared = await clear_faults(self.client, None, kind, target or "", reason)
        return ", ".join(f"cleared #{f.id}" for f in cleared)

    async def write(self, tag: str, value: Any, reason: str) -> str:
        await self.client.write(tag, value, reason)
        return "accepted"

    async def line(self, action: str, reason: str) -> str:
        return f"line {await self.client.line(action, reason)}"


async def clear_faults(
    plant: OperatorClient, fault_id: int | None, kind: str, module: str, reason: str
) -> list[FaultInfo]:
    """Clear one fault by id, or every pending or active fault of a kind (on a module)."""
    faults = await plant.faults()
    if fault_id is not None:
        chosen = [f for f in faults if f.id == fault_id]
        if not chosen:
            # Let the plant say why (unknown or already ended): its words are the record.
            await plant.clear(fault_id, reason)
            chosen = [
                FaultInfo(id=fault_id, kind="?", target="?", magnitude=math.nan, state="ended")
            ]
            return chosen
    else:
        chosen = [f for f in faults if f.kind == kind and module in ("", f.target)]
        if not chosen:
            where = f" on {module}" if module else ""
            raise PlantError(f"no pending or active {kind} fault{where} to clear")
    for f in chosen:
        await plant.clear(f.id, reason)
    return chosen


def _line_action(action: str) -> LineAction:
    if action not in ("start", "stop", "abort", "reset"):
        raise ValueError(f"unknown line action {action!r}")
    return action  # type: ignore[return-value]
