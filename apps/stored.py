"""A run of the whole stack as the historian stored it: read back from InfluxDB, and scored.

Everything here reads InfluxQL (`bridge.historian.influxql.query_rows`), so it works against
InfluxDB 1.x, 2.x (with its DBRP mapping) and 3.x alike. The schema is the historian's
(bridge/historian/points.py): `telemetry` and `truth` (module, site; a field per tag and a
`<name>_seq` per sample), `events` (faults, alarms, audit records) and `pipeline`.

The scores (`score`) are those of `plant kpi` (shared/domain.md, "How control quality is
scored"), taken from what was stored instead of from the twin's ledger:

- quality outcome from the simulation-only truth tags, which are the ledger's running totals
  (diverter.true_oos_accepted: OOS tablets released, true_oos_quarantined, true_oos_mass,
  diverter.diverted_mass, press.tablets_total), as their change over the window;
- in-spec share by mass: 1 - true OOS mass / mass made (each stretch's tablets at the weight the
  checkweigher measured then). The stored tags have no count of OOS tablets, only their mass,
  so this is by mass; the ledger's `in_spec_pct` counts tablets (OOS tablets of a starved blend
  are lighter, so the two differ by a point or so in a bad run);
- fault handling: each `fault_raised` event against the controller's `alarm` events, by
  `apps.kpi.detection` (the same rule as the in-process score), on the run's own clock:
  seconds from its first stored sample ("bridging@30");
- controller actions: the controller's own audit records of the commands it sent (accepted,
  refused, unanswered);
- data completeness: per tag the samples stored; per site the samples published, from the
  sequence numbers the edge gives every sample (one counter for all of a site's tags): a
  number missing between the first and the last stored is a sample published and not stored
  (its tag is not known from what was stored), a number stored twice a duplicate. So a
  missing number is an upper bound of a loss, exact for a run without these: a tag updated
  twice at one source time (the line's stop resets setpoints) is one point in InfluxDB, the
  second sample over the first, so the first's number is gone; and an edge restarted mid-run
  skips the rest of its reserved block (bridge/edge/sequence.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from apps.alarm_kpi import STORED_STALE_S, alarm_json, alarm_rows, stored_alarms
from apps.kpi import detection
from bridge.historian.influxql import query_rows
from controller import Alarm
from core.alarm_measures import AlarmMeasures

MAX_NS = 2**62  # "until the end": far beyond any run, inside InfluxDB's range
OOS_RELEASED = "diverter.true_oos_accepted"
COUNTERS = (
    "press.tablets_total",
    "diverter.diverted_mass",
    "diverter.diverted_count",
    "diverter.accepted_count",
    OOS_RELEASED,
    "diverter.true_oos_mass",
    "diverter.true_tablets_quarantined",
    "diverter.true_oos_quarantined",
)
TRUTH_TAGS = {
    "diverter.true_oos_mass",
    OOS_RELEASED,
    "diverter.true_tablets_quarantined",
    "diverter.true_oos_quarantined",
    "press.true_api_content",
}
SEQ = "_seq"


@dataclass(frozen=True, slots=True)
class Source:
    """Where the historian stored the run, and which part of it to read."""

    url: str
    db: str
    site: str
    token: str = ""
    start_ns: int = 0
    end_ns: int = MAX_NS

    def rows(self, q: str) -> list[dict[str, Any]]:
        return query_rows(self.url, self.db, q, token=self.token)

    def where(self, module: str | None = None) -> str:
        module_clause = f" AND \"module\" = '{_quoted(module)}'" if module else ""
        return (
            f"\"site\" = '{_quoted(self.site)}'{module_clause}"
            f" AND time >= {self.start_ns} AND time <= {self.end_ns}"
        )


def parse_instant(text: str, option: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise), as the data's source times: ns."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e6) * 1000


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def measurement_of(tag_id: str) -> str:
    return "truth" if tag_id in TRUTH_TAGS else "telemetry"


def series(source: Source, tag_ids: Iterable[str]) -> dict[str, list[tuple[int, Any]]]:
    """Every stored (time ns, value) of each tag in the window, oldest first (None: no value)."""
    by_query: dict[tuple[str, str], list[str]] = {}
    for tag_id in tag_ids:
        module, name = tag_id.split(".", 1)
        by_query.setdefault((measurement_of(tag_id), module), []).append(name)
    out: dict[str, list[tuple[int, Any]]] = {}
    for (measurement, module), names in by_query.items():
        fields = ",".join(f'"{n}"' for n in names)
        q = f'SELECT {fields} FROM "{measurement}" WHERE {source.where(module)}'
        rows = source.rows(q)
        for name in names:
            out[f"{module}.{name}"] = [
                (int(r["time"]), r[name]) for r in rows if r.get(name) is not None
            ]
    return out


def events(source: Source) -> list[dict[str, Any]]:
    """Every event of the site in the window (faults, alarms, audit records), oldest first."""
    rows = source.rows(f'SELECT * FROM "events" WHERE {source.where()}')
    return sorted(rows, key=lambda r: (int(r["time"]), str(r.get("source")), r.get("seq") or 0))


def counter_change(source: Source, tag_id: str) -> float:
    """How much a running total grew over the window: its last value in it less the last before."""
    module, name = tag_id.split(".", 1)
    measurement = measurement_of(tag_id)
    site = f"\"site\" = '{_quoted(source.site)}' AND \"module\" = '{_quoted(module)}'"

    def last(condition: str) -> float:
        q = f'SELECT last("{name}") AS v FROM "{measurement}" WHERE {site} AND {condition}'
        rows = source.rows(q)
        value = rows[0]["v"] if rows else None
        return float(value) if isinstance(value, int | float) else 0.0

    end = last(f"time <= {source.end_ns}")
    before = last(f"time < {source.start_ns}") if source.start_ns > 0 else 0.0
    return end - before


# --- data completeness -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completeness:
    """Samples stored per tag, and per site against those published (by sequence number)."""

    stored_per_tag: dict[str, int]
    stored: int  # points of the window (a sample stored twice under another time: twice)
    unique: int  # sequence numbers of the window
    first_seq: int | None
    last_seq: int | None
    outside: int = 0  # numbers between first and last of samples timed outside the window
    gaps: tuple[tuple[int, int], ...] = ()  # (first missing, last missing), at most a few

    @property
    def published(self) -> int:
        """The window's samples the edge numbered, from its first stored to its last stored."""
        if self.first_seq is None or self.last_seq is None:
            return 0
        return self.last_seq - self.first_seq + 1 - self.outside

    @property
    def lost(self) -> int:
        return self.published - self.unique

    @property
    def duplicates(self) -> int:
        return self.stored - self.unique

    @property
    def stored_pct(self) -> float:
        return 100.0 * self.unique / self.published if self.published else math.nan


MAX_GAPS = 20
#: The edge numbers samples as they arrive, which is nearly but not quite source-time order
#: (tags come in a subscription's batches): numbers of the window's first and last samples
#: interleave with those of samples just outside it. Samples stored up to this far outside the
#: window count as "outside", not as missing.
EDGE_NS = 60 * 10**9


def _seqs(source: Source) -> tuple[dict[str, int], list[int]]:
    per_tag: dict[str, int] = {}
    seqs: list[int] = []
    for measurement in ("telemetry", "truth"):
        q = f'SELECT /{SEQ}$/ FROM "{measurement}" WHERE {source.where()} GROUP BY "module"'
        for row in source.rows(q):
            module = str(row.get("module"))
            for key, value in row.items():
                if key.endswith(SEQ) and isinstance(value, int | float):
                    tag = f"{module}.{key.removesuffix(SEQ)}"
                    per_tag[tag] = per_tag.get(tag, 0) + 1
                    seqs.append(int(value))
    return per_tag, seqs


def completeness(source: Source) -> Completeness:
    """Per tag the samples stored (its `_seq` fields), and the site's sequence numbers.

    A number between the window's first and last that no stored sample has, within EDGE_NS
    around the window either, is a sample published and not stored (or not yet).
    """
    per_tag, seqs = _seqs(source)
    unique = sorted(set(seqs))
    if not unique:
        return Completeness({}, 0, 0, None, None)
    first, last = unique[0], unique[-1]
    wider = replace(
        source, start_ns=max(source.start_ns - EDGE_NS, 0), end_ns=source.end_ns + EDGE_NS
    )
    around = {n for n in _seqs(wider)[1] if first <= n <= last}
    outside = len(around - set(unique))
    return Completeness(
        stored_per_tag=dict(sorted(per_tag.items())),
        stored=len(seqs),
        unique=len(unique),
        first_seq=first,
        last_seq=last,
        outside=outside,
        gaps=tuple(_gaps(sorted(around | set(unique))))[:MAX_GAPS],
    )


def _gaps(ordered: list[int]) -> Iterator[tuple[int, int]]:
    for before, after in itertools.pairwise(ordered):
        if after > before + 1:
            yield before + 1, after - 1


# --- faults, alarms, actions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredFault:
    """A fault as its events tell it: kind, target, onset and end (s since the epoch)."""

    kind: str
    target: str
    onset_s: float
    ended_s: float | None
    magnitude: float | None = None


def faults(rows: Iterable[dict[str, Any]]) -> list[StoredFault]:
    """Each `fault_raised` with the next `fault_cleared` of the same kind@target."""
    open_: dict[str, tuple[float, float | None]] = {}
    done: list[StoredFault] = []
    for row in rows:
        if row.get("kind") != "fault":
            continue
        target = str(row.get("target") or "")
        when = int(row["time"]) / 1e9
        if row.get("action") == "fault_raised":
            new = row.get("new")
            magnitude = _float(new)
            open_.setdefault(target, (when, magnitude))
        elif row.get("action") == "fault_cleared" and target in open_:
            onset, magnitude = open_.pop(target)
            kind, _, where = target.partition("@")
            done.append(StoredFault(kind, where, onset, when, magnitude))
    for target, (onset, magnitude) in open_.items():
        kind, _, where = target.partition("@")
        done.append(StoredFault(kind, where, onset, None, magnitude))
    return sorted(done, key=lambda f: f.onset_s)


def _minus(value: float | None, zero: float) -> float | None:
    return None if value is None else value - zero


def _float(value: object) -> float | None:
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def controller_alarms(rows: Iterable[dict[str, Any]]) -> list[Alarm]:
    """The controller's alarms, raised and cleared (its `alarm` events)."""
    return [
        Alarm(
            time=int(r["time"]) / 1e9,
            name=str(r.get("target") or ""),
            raised=r.get("action") == "raise",
            message=str(r.get("reason") or ""),
        )
        for r in rows
        if r.get("kind") == "alarm" and r.get("source") == "controller"
    ]


def controller_actions(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The controller's own records of the commands it sent (not its notes about itself)."""
    return [
        r
        for r in rows
        if r.get("kind") == "audit"
        and r.get("source") == "controller"
        and r.get("target") != "controller"
    ]


# --- the scores -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredKpis:
    """The scores of a run from what the historian stored."""

    site: str
    start_ns: int
    end_ns: int
    tablets_made: int
    tablets_diverted: int
    oos_released: int
    quarantined: int
    oos_quarantined: int
    true_oos_kg: float
    diverted_kg: float  # everything sent to reject (on command, and by the line itself)
    made_kg: float
    in_spec_pct: float  # by mass
    detection_delay_s: dict[str, float | None] = field(default_factory=dict)
    false_alarms_per_h: float = 0.0
    actions: int = 0
    actions_accepted: int = 0
    completeness: Completeness | None = None
    alarms: AlarmMeasures | None = None  # the alarm load (ISA-18.2), from the stored transitions

    @property
    def hours(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 3.6e12

    @property
    def detection_rate(self) -> float:
        found = [d for d in self.detection_delay_s.values() if d is not None]
        return len(found) / len(self.detection_delay_s) if self.detection_delay_s else 1.0


def mass_made(source: Source, made: float) -> float:
    """kg of tablets made in the window: each stretch's tablets at the weight then measured.

    The press's tablet count and the checkweigher's weight are read together; tablets made
    before the first stored count (a run already under way) weigh the first weight stored.
    """
    data = series(source, ["press.tablets_total", "press.tablet_weight"])
    counts, weights = data["press.tablets_total"], dict(data["press.tablet_weight"])
    if not counts or not weights:
        return 0.0
    first_weight = next(iter(weights.values()))
    weight = first_weight
    previous = counts[0][1] if source.start_ns > 0 else 0
    total_mg = 0.0
    for t, count in counts:
        weight = weights.get(t, weight)
        total_mg += max(float(count) - float(previous), 0.0) * weight
        previous = count
    counted = float(counts[-1][1]) - (float(counts[0][1]) if source.start_ns > 0 else 0.0)
    # A count that fell (a reset) is not made tablets; scale to the counter's own change.
    return total_mg / 1e6 * (made / counted if counted > 0 else 0.0)


def time_span(source: Source) -> tuple[int, int]:
    """The first and last stored telemetry times of the site in the window (ns)."""
    q = f'SELECT first("tablets_total") AS f FROM "telemetry" WHERE {source.where("press")}'
    first = source.rows(q)
    q = f'SELECT last("tablets_total") AS l FROM "telemetry" WHERE {source.where("press")}'
    last = source.rows(q)
    if not first or not last:
        return source.start_ns, source.start_ns
    return int(first[0]["time"]), int(last[0]["time"])


def score(source: Source, event_rows: list[dict[str, Any]] | None = None) -> StoredKpis:
    """Score the window of the run from what was stored (see the module's docstring)."""
    rows = events(source) if event_rows is None else event_rows
    change = {tag: counter_change(source, tag) for tag in COUNTERS}
    start_ns, end_ns = time_span(source)
    made = change["press.tablets_total"]
    made_kg = mass_made(source, made)
    oos_kg = change["diverter.true_oos_mass"]
    hours = max(end_ns - start_ns, 0) / 3.6e12
    # On the run's own clock (s from its first stored sample), so a fault reads "bridging@30".
    zero = start_ns / 1e9
    found = [
        replace(f, onset_s=f.onset_s - zero, ended_s=_minus(f.ended_s, zero)) for f in faults(rows)
    ]
    alarms = [replace(a, time=a.time - zero) for a in controller_alarms(rows)]
    delays, false_rate = detection(found, alarms, hours)
    actions = controller_actions(rows)
    return StoredKpis(
        site=source.site,
        start_ns=start_ns,
        end_ns=end_ns,
        tablets_made=round(made),
        tablets_diverted=round(change["diverter.diverted_count"]),
        oos_released=round(change[OOS_RELEASED]),
        quarantined=round(change["diverter.true_tablets_quarantined"]),
        oos_quarantined=round(change["diverter.true_oos_quarantined"]),
        true_oos_kg=oos_kg,
        diverted_kg=change["diverter.diverted_mass"],
        made_kg=made_kg,
        in_spec_pct=100.0 * (1.0 - oos_kg / made_kg) if made_kg > 0 else math.nan,
        detection_delay_s=delays,
        false_alarms_per_h=false_rate,
        actions=len(actions),
        actions_accepted=sum(1 for a in actions if a.get("accepted") is True),
        completeness=completeness(source),
        alarms=stored_alarms(rows, zero, hours),
    )


def kpis_json(k: StoredKpis) -> dict[str, Any]:
    """The scores as one JSON object (no NaN: missing values are null)."""

    def number(value: float | None, digits: int) -> float | None:
        return round(value, digits) if value is not None and math.isfinite(value) else None

    c = k.completeness
    return {
        "site": k.site,
        "from_ns": k.start_ns,
        "to_ns": k.end_ns,
        "hours": number(k.hours, 4),
        "tablets_made": k.tablets_made,
        "tablets_diverted": k.tablets_diverted,
        "oos_released": k.oos_released,
        "oos_quarantined": k.oos_quarantined,
        "quarantined": k.quarantined,
        "true_oos_kg": number(k.true_oos_kg, 4),
        "diverted_kg": number(k.diverted_kg, 4),
        "diverted_over_true_oos": (
            number(k.diverted_kg / k.true_oos_kg, 3) if k.true_oos_kg > 0 else None
        ),
        "made_kg": number(k.made_kg, 4),
        "in_spec_pct": number(k.in_spec_pct, 3),
        "detection_rate": number(k.detection_rate, 3),
        "detection_delay_s": {
            name: number(delay, 1) if delay is not None else None
            for name, delay in k.detection_delay_s.items()
        },
        "false_alarms_per_h": number(k.false_alarms_per_h, 2),
        "controller_actions": k.actions,
        "controller_actions_accepted": k.actions_accepted,
        "samples_stored": c.stored if c else 0,
        "samples_published": c.published if c else 0,
        "samples_lost": c.lost if c else 0,
        "samples_duplicated": c.duplicates if c else 0,
        "stored_per_tag": c.stored_per_tag if c else {},
        **({"alarms": alarm_json(k.alarms, STORED_STALE_S)} if k.alarms is not None else {}),
    }


def kpi_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The scores as (name, value) lines for people (the CLI's table, the report's)."""

    def show(value: Any, unit: str = "") -> str:
        if value is None:
            return "n/a"
        return f"{value:,}{unit}"

    rows = [
        ("tablets made", show(data["tablets_made"])),
        ("OOS tablets released (must be 0)", show(data["oos_released"])),
        ("OOS tablets quarantined", show(data["oos_quarantined"])),
        ("tablets quarantined", show(data["quarantined"])),
        ("in spec (by mass)", show(data["in_spec_pct"], " %")),
        ("true OOS mass", show(data["true_oos_kg"], " kg")),
        ("diverted mass (all)", show(data["diverted_kg"], " kg")),
        ("diverted / true OOS", show(data["diverted_over_true_oos"])),
        ("detection rate", show(data["detection_rate"])),
        ("false alarms", show(data["false_alarms_per_h"], " /h")),
        (
            "controller actions (accepted)",
            f"{data['controller_actions']:,} ({data['controller_actions_accepted']:,})",
        ),
        (
            "samples stored / published",
            f"{data['samples_stored']:,} / {data['samples_published']:,}"
            f" (lost {data['samples_lost']:,}, twice {data['samples_duplicated']:,})",
        ),
    ]
    rows += [
        (f"detected {fault}", "missed" if delay is None else f"after {delay:g} s")
        for fault, delay in data["detection_delay_s"].items()
    ]
    if "alarms" in data:
        rows += alarm_rows(data["alarms"], show)
    return rows
