"""Self-metrics of the bridge services: the payload on `pcmm/v1/<site>/metrics/<service>`.

Every bridge service (edge, historian) counts what it received, wrote, retried, dropped and
dead-lettered, and reports it every few seconds. The payload is JSON, version 1:

    {"v": 1, "service": "edge", "site": "site1", "instance": "edge-1", "time_ns": 17...,
     "values": {"received": 120, "written": 118, "spool_depth": 2, "lag_ms": 35.5}}

Values are counters since the start of the process or gauges, all finite numbers. The historian
stores them in the InfluxDB measurement `pipeline` (see bridge/historian/README.md).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from core.payload import PayloadError, decoder, parse_json

VERSION = 1
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")  # full matches only: "x\n" is not a name


@dataclass(frozen=True, slots=True)
class Metrics:
    """One report of one service instance."""

    service: str
    site: str
    instance: str
    time_ns: int
    values: dict[str, float] = field(default_factory=dict)


def encode_metrics(metrics: Metrics) -> bytes:
    return json.dumps(
        {
            "v": VERSION,
            "service": metrics.service,
            "site": metrics.site,
            "instance": metrics.instance,
            "time_ns": metrics.time_ns,
            "values": metrics.values,
        },
        separators=(",", ":"),
        allow_nan=False,
    ).encode()


@decoder
def decode_metrics(data: bytes) -> Metrics:
    """Parse and validate a metrics report; raise `PayloadError` with the reason."""
    obj: Any = parse_json(data)
    if not isinstance(obj, dict):
        raise PayloadError("not a JSON object")
    if obj.get("v") != VERSION:
        raise PayloadError(f"unsupported payload version {obj.get('v')!r} (expected {VERSION})")
    text: dict[str, str] = {}
    for key in ("service", "site", "instance"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise PayloadError(f"metrics: {key!r} must be a non-empty string")
        text[key] = value
    time_ns = obj.get("time_ns")
    if isinstance(time_ns, bool) or not isinstance(time_ns, int) or not 0 <= time_ns < 2**63:
        raise PayloadError("metrics: 'time_ns' must be an integer of ns since the epoch")
    raw = obj.get("values")
    if not isinstance(raw, dict) or not raw:
        raise PayloadError("metrics: 'values' must be a non-empty object")
    values: dict[str, float] = {}
    for name, value in raw.items():
        if not _NAME.fullmatch(name):
            raise PayloadError(f"metrics: {name!r} is not a metric name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(f"metrics: {name!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise PayloadError(f"metrics: {name!r} is not finite")
        values[name] = number
    return Metrics(
        service=text["service"],
        site=text["site"],
        instance=text["instance"],
        time_ns=time_ns,
        values=values,
    )
