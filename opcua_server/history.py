"""History of every published tag, bounded in memory, served through OPC UA HistoryRead.

asyncua's own `historize_node_data_change` stores samples through an internal subscription per
node and keeps `DataValue` objects (a few hundred bytes each). At 5,000 tags that doubles the
server's work and eats memory, so the publisher appends here directly and samples are kept as
packed arrays (17 bytes each): 5,000 tags x 900 samples is about 75 MB.

A tag keeps the samples of the last `window_s` seconds of plant time, and never more than
`max_samples`, whichever is fewer. Reads rebuild `DataValue`s with the plant's source timestamp.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.server.history import HistoryStorageInterface

from opcua_server.clock import PlantClock

#: Status codes kept as one byte per sample.
STATUS_CODES = (
    ua.StatusCodes.Good,
    ua.StatusCodes.Uncertain,
    ua.StatusCodes.UncertainLastUsableValue,
    ua.StatusCodes.Bad,
)
_STATUS_INDEX = {code: i for i, code in enumerate(STATUS_CODES)}


class TagSamples:
    """One tag's samples, oldest first: plant time, value (as a double) and status."""

    __slots__ = ("start", "status", "times", "values")

    def __init__(self) -> None:
        self.times = array("d")
        self.values = array("d")
        self.status = array("B")
        self.start = 0  # samples before this index have expired

    def __len__(self) -> int:
        return len(self.times) - self.start

    def append(
        self, plant_s: float, value: float, status: int, oldest_s: float, max_samples: int
    ) -> None:
        times = self.times
        if len(times) > self.start and plant_s <= times[-1]:
            return  # one sample per source time: a republished value is not a new sample
        times.append(plant_s)
        self.values.append(value)
        self.status.append(status)
        start = self.start
        end = len(times)
        while start < end and (times[start] < oldest_s or end - start > max_samples):
            start += 1
        # Drop expired samples in bulk, so appending stays O(1) on average.
        if start > 1024 and start * 2 > end:
            del times[:start]
            del self.values[:start]
            del self.status[:start]
            start = 0
        self.start = start

    def between(self, low: float, high: float) -> Iterable[int]:
        """Indices of the samples with low <= time <= high, oldest first."""
        times = self.times
        return (i for i in range(self.start, len(times)) if low <= times[i] <= high)


class TagHistory(HistoryStorageInterface):  # type: ignore[misc]
    """The history store of every tag node, by NodeId.

    Args:
        clock: maps plant time to the UTC timestamps clients ask for.
        window_s: plant seconds of history kept per tag.
        max_samples: hard cap of samples per tag.
        max_response: values per node in one HistoryRead answer; the rest comes through a
            continuation point.
    """

    def __init__(
        self, clock: PlantClock, window_s: float, max_samples: int, max_response: int = 10_000
    ) -> None:
        super().__init__(max_response)
        self.clock = clock
        self.window_s = window_s
        self.max_samples = max_samples
        self._samples: dict[ua.NodeId, TagSamples] = {}
        self._types: dict[ua.NodeId, tuple[ua.VariantType, Any]] = {}

    def track(self, nodeid: ua.NodeId, variant_type: ua.VariantType, convert: Any) -> TagSamples:
        """Start keeping history for a node; returns the buffer the publisher appends to."""
        samples = self._samples.setdefault(nodeid, TagSamples())
        self._types[nodeid] = (variant_type, convert)
        return samples

    def append(
        self, samples: TagSamples, plant_s: float, value: float, status: ua.StatusCode
    ) -> None:
        samples.append(
            plant_s,
            float(value),
            _STATUS_INDEX.get(status.value, 3),
            plant_s - self.window_s,
            self.max_samples,
        )

    def samples(self, nodeid: ua.NodeId) -> TagSamples | None:
        return self._samples.get(nodeid)

    # HistoryStorageInterface ------------------------------------------------------------------
    async def init(self) -> None:
        """Nothing to open: the store lives in memory."""

    async def new_historized_node(self, node_id: ua.NodeId, period: Any, count: int = 0) -> None:
        """Nodes are tracked by the publisher, not through asyncua's history subscription."""

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        """Unused: the publisher appends directly (see the module docstring)."""

    async def read_node_history(
        self, node_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int
    ) -> tuple[list[ua.DataValue], datetime | None]:
        """Values between start and end (inclusive); reversed when end is before start."""
        samples = self._samples.get(node_id)
        if samples is None:
            return [], None
        epoch = ua.get_win_epoch()
        unbounded_start = start is None or start <= epoch
        unbounded_end = end is None or end <= epoch
        low = float("-inf") if unbounded_start or start is None else self.clock.plant_time(start)
        high = float("inf") if unbounded_end or end is None else self.clock.plant_time(end)
        reverse = (unbounded_start and not unbounded_end) or (
            not unbounded_start and not unbounded_end and low > high
        )
        if reverse:
            low, high = min(low, high), max(low, high)
        indices = list(samples.between(low, high))
        if reverse:
            indices.reverse()
        if nb_values and len(indices) > nb_values:
            indices = indices[:nb_values]
        continuation = None
        if len(indices) > self.max_history_data_response_size:
            limit = self.max_history_data_response_size
            continuation = self.clock.utc(samples.times[indices[limit]])
            indices = indices[:limit]
        vtype, convert = self._types[node_id]
        return [self._datavalue(samples, i, vtype, convert) for i in indices], continuation

    def _datavalue(
        self, samples: TagSamples, i: int, vtype: ua.VariantType, convert: Any
    ) -> ua.DataValue:
        when = self.clock.utc(samples.times[i])
        status = STATUS_CODES[samples.status[i]]
        bad = status == ua.StatusCodes.Bad  # a Bad value is null (OPC UA Part 4, 7.7.1)
        return ua.DataValue(
            Value=ua.Variant(None) if bad else ua.Variant(convert(samples.values[i]), vtype),
            StatusCode=ua.StatusCode(status),
            SourceTimestamp=when,
            ServerTimestamp=when,
        )

    async def new_historized_event(
        self, source_id: ua.NodeId, evtypes: Any, period: Any, count: int = 0
    ) -> None:
        """Events are not historized (alarms are kept by the condition refresh instead)."""

    async def save_event(self, event: Any) -> None:
        """Events are not historized."""

    async def read_event_history(
        self,
        source_id: ua.NodeId,
        start: datetime | None,
        end: datetime | None,
        nb_values: int,
        evfilter: Any,
    ) -> tuple[list[Any], datetime | None]:
        return [], None

    async def stop(self) -> None:
        """Nothing to close."""
