"""Telemetry and events for tests, built with core.payload (the edge's encoder)."""

from __future__ import annotations

import time
import uuid

from core.audit_chain import AuditChain
from core.payload import Event, Sample, TelemetryBatch, encode_batch, encode_event

#: Five feeder tags published together in every test batch.
FEEDER_TAGS = ("mass_flow_pv", "mass_flow_sp", "hopper_mass", "drive_command", "feed_factor")
T0 = 1_700_000_000_000_000_000  # 2023-11-14, ns: far from "now", inside any retention


def site_id(prefix: str = "t") -> str:
    """A site id of its own for each test, so runs never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def feeder_batch(
    site: str, index: int, module: str = "api_feeder", step_ns: int = 10_000_000
) -> TelemetryBatch:
    """Batch `index`: the five feeder tags at one source time, seqs 5*index .. 5*index+4."""
    source_ns = T0 + index * step_ns
    samples = tuple(
        Sample(
            tag=f"{module}.{name}",
            value=2.0 + 0.001 * index + k,
            quality="good",
            source_ns=source_ns,
            server_ns=source_ns + 1000,
            seq=index * len(FEEDER_TAGS) + k,
        )
        for k, name in enumerate(FEEDER_TAGS)
    )
    return TelemetryBatch(site, module, time.time_ns(), samples)


def feeder_payload(site: str, index: int, module: str = "api_feeder") -> bytes:
    return encode_batch(feeder_batch(site, index, module))


def event_payload(site: str, seq: int, time_ns: int, **fields: object) -> bytes:
    values: dict[str, object] = {
        "site": site,
        "kind": "audit",
        "seq": seq,
        "time_ns": time_ns,
        "source": "twin",
    }
    values.update(fields)
    event = Event(**values)  # type: ignore[arg-type]
    if event.kind == "audit" and not event.hash:  # the historian takes chained records only
        event = AuditChain(str(values.get("log") or "testlog")).seal(event)
    return encode_event(event)
