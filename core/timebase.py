"""The time base of every message: integer nanoseconds since the Unix epoch, UTC.

OPC UA carries DateTime (100 ns ticks; asyncua hands out Python datetimes, naive ones meaning
UTC); the payloads, MQTT and InfluxDB carry integer ns. Python's datetime counts microseconds,
so a conversion through it is exact to the microsecond and never rounds through a float.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_ns(when: datetime | None) -> int:
    """A datetime (aware, or naive meaning UTC) as integer ns since the epoch; None is 0."""
    if when is None:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // _MICROSECOND * 1000


def from_ns(ns: int) -> datetime:
    """Integer ns since the epoch as an aware UTC datetime (to the microsecond below)."""
    return EPOCH + timedelta(microseconds=ns // 1000)
