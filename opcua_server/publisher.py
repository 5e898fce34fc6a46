"""Publishing tag values to their nodes, with source timestamps, status codes and history.

Each clock tick the server hands the publisher the values of every tag. A tag is written to its
node (and so to every subscription) when its source time advanced or its status changed; an
unchanged sample is not written again.

Status: the plant's quality maps to Good, Uncertain or Bad. A Good tag whose source time is
older than `stale_periods` times its module's update period is published as
UncertainLastUsableValue: the instrument has stopped reporting. Bad values are published as
null, as OPC UA asks (Part 4, 7.7.1); history keeps them as null too.

A tick hands the event loop back every YIELD_EVERY samples. Written in one go, 20,000 samples
held the loop for 0.5-3 s on a shared two-core machine (issue 17): requests waited that long,
and a client's health probe (asyncua's read of ServerState, answered within its
`watchdog_intervall`, 1 s by default) took the stall for a dead connection. A subscription
may then publish part of a tick before the rest: each sample is still published once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua

from core.tags import Quality
from opcua_server.address_space import PlantNodes, TagNode
from opcua_server.clock import PlantClock
from opcua_server.history import TagHistory, TagSamples
from twin.store import TagValue

QUALITY_STATUS = {
    Quality.GOOD: ua.StatusCodes.Good,
    Quality.UNCERTAIN: ua.StatusCodes.Uncertain,
    Quality.BAD: ua.StatusCodes.Bad,
}
STALE = ua.StatusCodes.UncertainLastUsableValue
GOOD = ua.StatusCodes.Good
YIELD_EVERY = 1000  # samples written between two returns to the event loop


class _Slot:
    """What the publisher keeps per tag: its node, history buffer and last publication."""

    __slots__ = ("node", "samples", "stale_after", "status", "time", "value")

    def __init__(self, node: TagNode, samples: TagSamples, stale_after: float) -> None:
        self.node = node
        self.samples = samples
        self.stale_after = stale_after
        self.time = float("-inf")
        self.status = -1
        self.value: Any = None


class Publisher:
    """Writes tag values to their nodes and their history.

    Args:
        server: the asyncua server holding the nodes.
        nodes: the tag nodes, from `address_space.build_address_space`.
        clock: maps plant time to UTC source timestamps.
        history: the history store.
        periods: each module's update period (plant seconds), for staleness.
        stale_periods: how many periods without news make a Good tag Uncertain.
    """

    def __init__(
        self,
        server: Server,
        nodes: PlantNodes,
        clock: PlantClock,
        history: TagHistory,
        periods: Mapping[str, float],
        stale_periods: float,
    ) -> None:
        self._aspace = server.iserver.aspace
        self.clock = clock
        self.history = history
        self.published = 0  # samples written since start
        self._slots: dict[str, _Slot] = {}
        for tag_id, node in nodes.tags.items():
            samples = history.track(node.nodeid, node.variant_type, node.convert)
            period = periods.get(node.tag.module, 1.0)
            self._slots[tag_id] = _Slot(node, samples, stale_periods * period)

    async def publish(self, values: Mapping[str, TagValue], now: float) -> int:
        """Publish what changed in `values` at plant time `now`; returns how many samples."""
        server_time = datetime.now(UTC)
        utc = self.clock.utc
        stamps: dict[float, datetime] = {}
        write = self._aspace.write_attribute_value
        history = self.history
        value_attr = ua.AttributeIds.Value
        count = 0
        for tag_id, slot in self._slots.items():
            sample = values.get(tag_id)
            if sample is None:
                continue
            status = QUALITY_STATUS[sample.quality]
            source_time = sample.source_time
            if status == GOOD and now - source_time > slot.stale_after:
                status = STALE
            if source_time <= slot.time and status == slot.status:
                continue
            value = sample.value
            slot.time, slot.status, slot.value = source_time, status, value
            stamp = stamps.get(source_time)
            if stamp is None:
                stamp = stamps[source_time] = utc(source_time)
            node = slot.node
            code = ua.StatusCode(status)
            datavalue = ua.DataValue(
                Value=node.variant(value),
                StatusCode=code,
                SourceTimestamp=stamp,
                ServerTimestamp=server_time,
            )
            await write(node.nodeid, value_attr, datavalue)
            history.append(slot.samples, source_time, value, code)
            count += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self.published += count
        return count

    async def publish_one(self, tag_id: str, sample: TagValue) -> None:
        """Publish one tag now, whatever its last publication (after an accepted write)."""
        slot = self._slots.get(tag_id)
        if slot is not None:
            slot.time, slot.status = float("-inf"), -1
            await self.publish({tag_id: sample}, sample.source_time)
