"""MQTT message -> InfluxDB line protocol: the historian's schema, derived from the tag registry.

`convert(topic, payload)` validates a message (topic and payload must agree) and returns its
points as line-protocol lines, nanosecond precision. Anything it cannot store raises
`PayloadError` with the reason, for the dead-letter topic. The schema (see README.md):

    telemetry,module=M,site=S <name>=<value>,<name>_seq=<seq>i[,<name>_quality="bad"] <source_ns>
    truth,module=M,site=S (the same, for pcmm/v1/<site>/simulation/<module>)
    events,kind=K,site=S,slot=<seq % 64>,source=X user="..",...,seq=<seq>i <time_ns>
    events,hash=H,kind=audit,log=L,site=S,source=X user="..",...,prev_hash="..",seq=<seq>i <time_ns>
    pipeline,instance=I,service=X,site=S <metric>=<float>,... <time_ns>

A point's identity is (measurement, tag set, timestamp), so writing a message twice stores it
once: redelivery after a crash is harmless.

Audit records (pcmm/v1/<site>/events/audit/<source>) are write-once. Their site and source come
from the topic, which the broker's ACL attests (only the edge may write the twin's and its own,
only the controller its own); a payload that names another site or source is refused. InfluxDB
overwrites a point with the same series and timestamp, so the record's own hash is in its series
key, and the historian recomputes that hash from the record's fields (and refuses the record when
it does not match): the same series and time then means the same record, so a replay rewrites
identical values (idempotent), and a different record with the same sequence number and time
(an edit, a forgery) lands beside the original instead of over it, where `plant audit verify`
reports the sequence number stored twice. The price is one series per audit record: audit
records are commands and faults, not samples (hundreds a day; InfluxDB 1.x's default limit is a
million series per database). Checking the stored record before each write would avoid that,
but makes the sink read before it writes and races a second historian of the shared subscription.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.metrics import Metrics, decode_metrics
from core import topics
from core.audit_chain import as_text, event_hash
from core.payload import (
    Event,
    PayloadError,
    Scalar,
    TelemetryBatch,
    decode_batch,
    decode_event,
    decoder,
)
from core.tags import TEMPLATES, DataType, TagSpec

TELEMETRY = "telemetry"
TRUTH = "truth"
EVENTS = "events"
PIPELINE = "pipeline"

#: Events at the same ns of one site, kind and source are told apart by this tag: seq modulo
#: EVENT_SLOTS. It takes EVENT_SLOTS events with the same timestamp to collide, while the
#: series count stays bounded (a seq tag would make a series per event).
EVENT_SLOTS = 64
MAX_STRING = 16 * 1024  # longest string field accepted (InfluxDB 1.x refuses 64 KiB)
QUALITY_SUFFIX = "_quality"
SEQ_SUFFIX = "_seq"

# InfluxDB's time range (models.MinNanoTime, MaxNanoTime: int64 without its two extremes, which
# it keeps as sentinels); a point outside it makes InfluxDB refuse the line, so it is refused here.
MIN_TIME_NS = -(2**63) + 2
MAX_TIME_NS = 2**63 - 2

# Tag values are identifiers (site, module, kind, service ids): anything else is refused
# rather than escaped, because line protocol cannot carry newlines or a trailing backslash.
# Always `fullmatch`: with `match`, "$" also matches before a trailing newline ("site1\n").
_TAG_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def _field_specs() -> dict[str, TagSpec]:
    """Tag name -> its template, over every module type: the fields a module may have."""
    specs: dict[str, TagSpec] = {}
    for templates in TEMPLATES.values():
        for spec in templates:
            seen = specs.setdefault(spec.name, spec)
            if seen.data_type is not spec.data_type:  # one field, one InfluxDB type
                raise AssertionError(f"tag name {spec.name} has two data types")
            if spec.name.endswith((QUALITY_SUFFIX, SEQ_SUFFIX)):
                raise AssertionError(f"tag name {spec.name} collides with a derived field")
    return specs


FIELDS: dict[str, TagSpec] = _field_specs()


@dataclass(frozen=True, slots=True)
class Route:
    """What a topic carries: its measurement, its site and its last level."""

    measurement: str
    site: str
    name: str  # module (telemetry, truth), event kind or service
    source: str = ""  # audit records: whose, as the topic (the broker's ACL) attests


def route(topic: str) -> Route:
    """Where a topic's messages go; `PayloadError` for a topic the historian does not store."""
    parts = topic.split("/")
    root = topics.ROOT.split("/")
    if len(parts) == len(root) + 4 and parts[: len(root)] == root:
        site, events, kind, source = parts[len(root) :]
        if (events, kind) != ("events", "audit") or source not in topics.AUDIT_SOURCES:
            raise PayloadError(f"topic {topic!r} is not a historian topic")
        _tag_value(site, "site")
        return Route(EVENTS, site, kind, source)
    if len(parts) != len(root) + 3 or parts[: len(root)] != root:
        raise PayloadError(f"topic {topic!r} is not a historian topic")
    site, middle, last = parts[len(root) :]
    if middle == "simulation":
        found = Route(TRUTH, site, last)
    elif middle == "events" and last != "audit":  # audit records: events/audit/<source>
        found = Route(EVENTS, site, last)
    elif middle == "metrics":
        found = Route(PIPELINE, site, last)
    elif last == "telemetry":
        found = Route(TELEMETRY, site, middle)
    else:
        raise PayloadError(f"topic {topic!r} is not a historian topic")
    _tag_value(found.site, "site")
    _tag_value(found.name, "topic level")
    return found


@decoder
def convert(topic: str, payload: bytes) -> list[bytes]:
    """Validate one message and return its points as line protocol (ns precision).

    Raises `PayloadError` for anything it cannot store, whatever Python raised on the way.
    """
    where = route(topic)
    if where.measurement in (TELEMETRY, TRUTH):
        batch = decode_batch(payload)
        if (batch.site, batch.module) != (where.site, where.name):
            raise PayloadError(
                f"batch of {batch.site}/{batch.module} on the topic of {where.site}/{where.name}"
            )
        return telemetry_lines(where.measurement, batch)
    if where.measurement == EVENTS:
        event = decode_event(payload)
        if (event.site, event.kind) != (where.site, where.name):
            raise PayloadError(
                f"event of {event.site}/{event.kind} on the topic of {where.site}/{where.name}"
            )
        if where.source:
            if event.source != where.source:
                raise PayloadError(
                    f"audit record of {event.source!r} on the topic of {where.source}"
                )
            return [audit_line(event)]
        return [event_line(event)]
    metrics = decode_metrics(payload)
    if (metrics.site, metrics.service) != (where.site, where.name):
        raise PayloadError(
            f"metrics of {metrics.site}/{metrics.service} on the topic of {where.site}/{where.name}"
        )
    return [metrics_line(metrics)]


def telemetry_lines(measurement: str, batch: TelemetryBatch) -> list[bytes]:
    """One point per source timestamp: the samples measured at the same instant share a row."""
    _tag_value(batch.site, "site")
    _tag_value(batch.module, "module")
    rows: dict[int, dict[str, str]] = {}
    for i, sample in enumerate(batch.samples):
        name = sample.tag.partition(".")[2]
        spec = FIELDS.get(name)
        if spec is None:
            raise PayloadError(f"sample {i}: {sample.tag!r} is not a tag of the registry")
        if spec.ground_truth and measurement == TELEMETRY:
            # The controller reads telemetry and must never see ground truth.
            raise PayloadError(f"sample {i}: ground truth {sample.tag!r} on a telemetry topic")
        fields = rows.setdefault(sample.source_ns, {})
        if sample.value is not None:
            fields[name] = _typed(spec, sample.value, i)
        if sample.quality != "good":
            fields[name + QUALITY_SUFFIX] = _string(sample.quality)
        fields[name + SEQ_SUFFIX] = f"{sample.seq}i"
    head = f"{measurement},module={batch.module},site={batch.site} "
    return [_line(head, fields, ns) for ns, fields in sorted(rows.items())]


def event_line(event: Event) -> bytes:
    """An event; strings stay strings, old and new are stored as text (absent when null)."""
    for tag, what in ((event.site, "site"), (event.kind, "kind"), (event.source, "source")):
        _tag_value(tag, what)
    fields = {
        key: _string(getattr(event, key))
        for key in ("user", "action", "target", "reason", "result")
    }
    for key in ("old", "new"):
        value: Scalar = getattr(event, key)
        if value is not None:
            fields[key] = _string(as_text(value))
    fields["accepted"] = "true" if event.accepted else "false"
    fields["seq"] = f"{event.seq}i"
    if event.kind == "audit":
        raise PayloadError("audit records are stored by audit_line")
    if event.priority:  # an alarm transition (core.alarms): what alarm dashboards read
        fields["priority"] = f"{event.priority}i"
    for key in ("level", "state"):
        if getattr(event, key):
            fields[key] = _string(getattr(event, key))
    if event.elapsed_s:
        fields["elapsed_s"] = repr(float(event.elapsed_s))
    # An alarm transition names its alarm as a tag too, so dashboards can group by alarm
    # (InfluxQL groups by tags only); the same transition always has the same series key.
    alarm = ""
    if event.priority:
        _tag_value(event.target, "alarm")
        alarm = f"alarm={event.target},"
    head = (
        f"{EVENTS},{alarm}kind={event.kind},site={event.site},"
        f"slot={event.seq % EVENT_SLOTS},source={event.source} "
    )
    return _line(head, fields, event.time_ns)


def audit_line(event: Event) -> bytes:
    """An audit record, write-once: its hash is in its series key (see the module docstring).

    `event.site` and `event.source` must already be the topic's (`convert` checks them).
    """
    for tag, what in ((event.site, "site"), (event.source, "source"), (event.log, "log")):
        _tag_value(tag, what)
    fields = {
        key: _string(getattr(event, key))
        for key in ("user", "action", "target", "reason", "result")
    }
    for key in ("old", "new"):
        text = as_text(getattr(event, key))
        if text is not None:
            fields[key] = _string(text)
    fields["accepted"] = "true" if event.accepted else "false"
    fields["seq"] = f"{event.seq}i"
    # After the fields' own checks (a string too long says so rather than "hash mismatch").
    if not (event.hash and event.prev_hash):
        raise PayloadError("audit record without its hash chain (prev_hash, hash)")
    if event_hash(event, event.prev_hash) != event.hash:
        raise PayloadError(f"audit record {event.seq}: its hash does not match its fields")
    fields["prev_hash"] = _string(event.prev_hash)
    head = (
        f"{EVENTS},hash={event.hash},kind=audit,log={event.log},"
        f"site={event.site},source={event.source} "
    )
    return _line(head, fields, event.time_ns)


def metrics_line(metrics: Metrics) -> bytes:
    """A pipeline self-metrics report; every value is a float (no int/float type conflicts)."""
    for tag, what in (
        (metrics.instance, "instance"),
        (metrics.service, "service"),
        (metrics.site, "site"),
    ):
        _tag_value(tag, what)
    head = f"{PIPELINE},instance={metrics.instance},service={metrics.service},site={metrics.site} "
    return _line(head, {k: repr(float(v)) for k, v in metrics.values.items()}, metrics.time_ns)


def _line(head: str, fields: dict[str, str], ns: int) -> bytes:
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise PayloadError(f"time {ns} ns is outside InfluxDB's range {MIN_TIME_NS}..{MAX_TIME_NS}")
    text = f"{head}{','.join(f'{k}={v}' for k, v in fields.items())} {ns}"
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        raise PayloadError("a string is not valid Unicode") from None


def _typed(spec: TagSpec, value: Scalar, i: int) -> str:
    """The value as its registry type, so that a field never changes type in InfluxDB."""
    kind = spec.data_type
    if kind is DataType.BOOL:
        if isinstance(value, bool):
            return "true" if value else "false"
    elif kind is DataType.FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return repr(float(value))
    elif isinstance(value, str) and kind is DataType.ENUM and value in spec.states:
        return f"{spec.states.index(value)}i"
    elif isinstance(value, int) and not isinstance(value, bool):
        if -(2**63) <= value < 2**63:
            return f"{value}i"
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return f"{int(value)}i"
    raise PayloadError(f"sample {i}: {spec.name} expects {kind.value}, got {value!r}")


def _string(text: object) -> str:
    value = str(text)
    if len(value) > MAX_STRING:
        raise PayloadError(f"a string of {len(value)} characters is over {MAX_STRING}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tag_value(value: str, what: str) -> str:
    if not _TAG_VALUE.fullmatch(value):
        raise PayloadError(f"{what} {value!r} is not an identifier (A-Z a-z 0-9 _ . : -)")
    return value


def timestamps(lines: Iterable[bytes]) -> list[int]:
    """The timestamps of line-protocol lines (the last token of each)."""
    return [int(line.rsplit(b" ", 1)[1]) for line in lines]
