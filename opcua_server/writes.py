"""Client writes to tag nodes: checked and audited by the twin, answered with a status code.

Every write to a tag node, accepted or refused, goes through `Plant.apply(SetpointCommand)` so
that validation and the audit trail live in one place. The one check the twin cannot make is
the user's role; a refusal for that reason is written to the same audit log here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asyncua import ua

from core.commands import CommandResult, SetpointCommand
from core.text import shown
from opcua_server.address_space import PlantNodes
from opcua_server.security import PlantUser
from twin import Plant
from twin.store import TagValue

log = logging.getLogger(__name__)

WRITE_REASON = "OPC UA write"

#: The twin's rejection codes (core.commands.CommandResult.code) as OPC UA status codes.
REJECTION_STATUS = {
    "range": ua.StatusCodes.BadOutOfRange,
    "type": ua.StatusCodes.BadTypeMismatch,
    "state": ua.StatusCodes.BadInvalidState,
    "not_writable": ua.StatusCodes.BadNotWritable,
    "unknown_tag": ua.StatusCodes.BadNotWritable,
}


class SetpointWriter:
    """The write handler of `sessions.PlantSession` for the plant's tag nodes.

    Args:
        plant: the twin.
        nodes: the tag nodes.
        republish: called with an accepted tag's new value, so readers see it at once.
    """

    def __init__(
        self, plant: Plant, nodes: PlantNodes, republish: Callable[[str, TagValue], Awaitable[None]]
    ) -> None:
        self.plant = plant
        self.nodes = nodes
        self.republish = republish

    async def __call__(
        self, nodeid: ua.NodeId, datavalue: ua.DataValue, user: PlantUser
    ) -> ua.StatusCode | None:
        node = self.nodes.by_nodeid.get(nodeid)
        if node is None:
            return None
        tag, plant = node.tag, self.plant
        value = _python_value(datavalue)
        if not user.may_operate:
            why = f"{user.label} ({user.plant_role}) may not write setpoints"
            old = plant.read(tag.id) if tag.id in plant.registry else None
            plant.audit.record(
                plant.now,
                user.label,
                "write",
                tag.id,
                old=old,
                new=value,
                reason=WRITE_REASON,
                accepted=False,
                result=why,
            )
            log.info("write refused: %s -> %s: %s", tag.id, shown(value), why)
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        result = await self.apply(tag.id, value, user.label, WRITE_REASON)
        if not result.accepted:
            status = REJECTION_STATUS.get(result.code, ua.StatusCodes.BadInternalError)
            return ua.StatusCode(status)
        return ua.StatusCode(ua.StatusCodes.Good)

    async def apply(self, tag_id: str, value: Any, user: str, reason: str) -> CommandResult:
        """Write a setpoint as `user` (already allowed to operate), audited by the twin.

        The Value write above and the `WriteSetpoint` method (which carries a reason and the
        user a gateway acts for) both end here, so they behave the same.
        """
        plant = self.plant
        result = plant.apply(SetpointCommand(tag_id, value, user=user, reason=reason))
        if not result.accepted:
            log.info(
                "write refused: %s -> %s by %s: %s",
                shown(tag_id),
                shown(value),
                user,
                result.reason,
            )
            return result
        log.info("write: %s %r -> %r by %s", tag_id, result.old, result.new, user)
        sample = plant.snapshot()[tag_id]
        await self.republish(tag_id, TagValue(sample.value, sample.quality, plant.now))
        return result


def _python_value(datavalue: ua.DataValue) -> Any:
    """The written value as the twin understands it (None when the variant is empty)."""
    variant = datavalue.Value
    if variant is None:
        return None
    return variant.Value
