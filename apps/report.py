"""`plant report`: one self-contained HTML file a QA reviewer reads for a run of the stack.

Everything comes from what the historian stored (apps/stored.py reads it back over InfluxQL):
the line state over time; API content against its spec (the NIR's measurement, and the
tablets' true content, simulation only) with the diverted and quarantined windows shaded;
tablet weight and hardness against their spec; the feeders' flows; the faults, the alarms and
the controller's actions on the same time axis and listed with their reasons; the scores
(`plant kpi --from-influx`); the audit trail (who, what, old, new, when, why); and the data's
completeness. Spec limits and units come from the tag registry.

The plots are matplotlib's (the object API, no pyplot state), as inline SVG: the file needs
nothing beside it, no script and no network. Series longer than `MAX_POINTS` are thinned to
each bucket's lowest and highest point, so a spike is never thinned away.
"""

from __future__ import annotations

import html
import io
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from apps.stored import (
    MAX_NS,
    Source,
    StoredFault,
    completeness,
    controller_actions,
    controller_alarms,
    events,
    faults,
    kpi_rows,
    kpis_json,
    parse_instant,
    score,
    series,
)
from bridge.historian.influxql import InfluxQueryError, historian_influx
from core.layout import load_layout
from core.tags import TagRegistry, build_registry

MAX_POINTS = 3000  # per series in a plot
WIDTH_IN = 12.0
FEEDERS = ("api_feeder", "excipient_feeder", "lubricant_feeder")
STATE_COLOURS = {
    "idle": "#bdbdbd",
    "starting": "#90caf9",
    "producing": "#66bb6a",
    "diverting": "#ffb74d",
    "stopping": "#ce93d8",
    "stopped": "#9e9e9e",
    "faulted": "#e53935",
}
SECTIONS = (
    ("state", "Line state"),
    ("api", "API content against its spec"),
    ("tablets", "Tablet weight and hardness against their spec"),
    ("feeders", "Feeder flows"),
    ("events", "Faults, alarms and controller actions"),
    ("kpis", "Scores"),
    ("audit", "Audit trail"),
    ("completeness", "Data completeness"),
)

err = Console(stderr=True, highlight=False, soft_wrap=True)

Points = list[tuple[int, Any]]


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of time to shade: [start, end] in ns, with what it was."""

    start_ns: int
    end_ns: int
    label: str


def _when(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _iso(ns: int) -> str:
    return _when(ns).strftime("%Y-%m-%d %H:%M:%S")


def thin(points: Points, limit: int = MAX_POINTS) -> Points:
    """At most about `limit` points: each bucket's lowest and highest, in time order."""
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / (limit // 2))
    out: Points = []
    for i in range(0, len(points), size):
        bucket = points[i : i + size]
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        out.extend(sorted({low, high}))
    return out


def segments(points: Points, end_ns: int) -> list[tuple[int, int, Any]]:
    """A step signal as (start, end, value) runs; the last one lasts to `end_ns`."""
    runs: list[tuple[int, int, Any]] = []
    for i, (t, value) in enumerate(points):
        stop = points[i + 1][0] if i + 1 < len(points) else max(end_ns, t)
        if runs and runs[-1][2] == value:
            runs[-1] = (runs[-1][0], stop, value)
        else:
            runs.append((t, stop, value))
    return runs


def diverted_windows(position: Points, end_ns: int) -> list[Window]:
    """Where the gate was not at accept (moving counts: tablets go to reject)."""
    return [Window(a, b, "diverted") for a, b, v in segments(position, end_ns) if v != 0]


def quarantine_windows(rows: Iterable[dict[str, Any]]) -> list[Window]:
    """Accepted quarantines, as their audit records give the window ("start/end", ISO 8601)."""
    out = []
    for row in rows:
        if row.get("kind") != "audit" or row.get("action") != "quarantine":
            continue
        if row.get("accepted") is not True or row.get("source") == "edge":
            continue
        start, _, end = str(row.get("new") or "").partition("/")
        try:
            a = parse_instant(start.replace("Z", "+00:00"), "quarantine")
            b = parse_instant(end.replace("Z", "+00:00"), "quarantine")
        except ValueError:
            continue
        out.append(Window(a, b, "quarantined"))
    return out


# --- plots --------------------------------------------------------------------------------


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML declaration or DOCTYPE


def _figure(rows: int, height: float = 2.6) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure  # noqa: PLC0415 (only the report needs matplotlib)

    fig = Figure(figsize=(WIDTH_IN, height * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)
    return fig, [a for (a,) in axes]


def _dates(points: Points) -> tuple[list[datetime], list[float]]:
    return [_when(t) for t, _ in points], [float(v) for _, v in points]


def _shade(ax: Any, windows: Sequence[Window]) -> None:
    colours = {"diverted": "#ffcc80", "quarantined": "#ef9a9a"}
    seen: set[str] = set()
    for w in windows:
        label = w.label if w.label not in seen else None
        seen.add(w.label)
        ax.axvspan(
            _when(w.start_ns), _when(w.end_ns), color=colours.get(w.label, "#e0e0e0"),
            alpha=0.5, lw=0, label=label,
        )  # fmt: skip


def _marks(ax: Any, found: Sequence[StoredFault], alarm_ns: Sequence[int]) -> None:
    for fault in found:
        ax.axvline(_when(int(fault.onset_s * 1e9)), color="#6a1b9a", lw=1.0, ls="--")
    for ns in alarm_ns:
        ax.axvline(_when(ns), color="#d32f2f", lw=0.6, ls=":")


def _limits(ax: Any, limits: tuple[float, float] | None) -> None:
    if limits is None:
        return
    for value in limits:
        ax.axhline(value, color="#c62828", lw=1.0, ls="--")


@dataclass
class Run:
    """What the report shows, read once."""

    source: Source
    registry: TagRegistry
    data: dict[str, Points]
    rows: list[dict[str, Any]]
    start_ns: int
    end_ns: int

    @property
    def faults(self) -> list[StoredFault]:
        return faults(self.rows)

    @property
    def alarm_ns(self) -> list[int]:
        return [int(a.time * 1e9) for a in controller_alarms(self.rows) if a.raised]

    def shaded(self) -> list[Window]:
        gate = self.data.get("diverter.position_pv", [])
        return diverted_windows(gate, self.end_ns) + quarantine_windows(self.rows)

    def plot(self, ax: Any, tag_id: str, label: str | None = None, **style: Any) -> None:
        points = thin(self.data.get(tag_id, []))
        if points:
            x, y = _dates(points)
            ax.plot(x, y, lw=0.9, label=label or tag_id, **style)

    def unit(self, tag_id: str) -> str:
        tag = self.registry.get(tag_id)
        return tag.unit.symbol if tag is not None else ""

    def limits(self, tag_id: str) -> tuple[float, float] | None:
        tag = self.registry.get(tag_id)
        return tag.limits if tag is not None else None


def state_plot(run: Run) -> str:
    fig, (ax,) = _figure(1, 1.6)
    tag = run.registry.get("line.state")
    states = tag.states if tag is not None else ()
    for start, stop, value in segments(run.data.get("line.state", []), run.end_ns):
        name = states[value] if isinstance(value, int) and 0 <= value < len(states) else "?"
        a, b = _when(start), _when(stop)
        ax.axvspan(a, b, color=STATE_COLOURS.get(name, "#eeeeee"), lw=0)
    from matplotlib.patches import Patch  # noqa: PLC0415

    ax.legend(
        handles=[Patch(color=c, label=s) for s, c in STATE_COLOURS.items()],
        ncol=len(STATE_COLOURS), loc="upper center", bbox_to_anchor=(0.5, -0.35), fontsize=8,
    )  # fmt: skip
    ax.set_yticks([])
    _marks(ax, run.faults, run.alarm_ns)
    _span(ax, run)
    return _svg(fig)


def _span(ax: Any, run: Run) -> None:
    """The run's time on the x axis, in UTC, labelled as briefly as its length allows."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # noqa: PLC0415

    if run.end_ns > run.start_ns:
        ax.set_xlim(_when(run.start_ns), _when(run.end_ns))
    locator = AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)


def api_plot(run: Run) -> str:
    fig, axes = _figure(2)
    shaded = run.shaded()
    for ax, tag_id, label in (
        (axes[0], "nir.api_pct", "NIR API (measured)"),
        (axes[1], "press.true_api_content", "true API content of the tablets (simulation only)"),
    ):
        _shade(ax, shaded)
        run.plot(ax, tag_id, label)
        _limits(ax, run.limits(tag_id))
        _marks(ax, run.faults, run.alarm_ns)
        ax.set_ylabel(run.unit(tag_id))
        ax.legend(loc="upper right", fontsize=8)
    _span(axes[0], run)
    return _svg(fig)


def tablets_plot(run: Run) -> str:
    fig, axes = _figure(2)
    shaded = run.shaded()
    for ax, tag_id in zip(axes, ("press.tablet_weight", "press.hardness"), strict=True):
        _shade(ax, shaded)
        run.plot(ax, tag_id)
        _limits(ax, run.limits(tag_id))
        _marks(ax, run.faults, run.alarm_ns)
        ax.set_ylabel(run.unit(tag_id))
        ax.legend(loc="upper right", fontsize=8)
    _span(axes[0], run)
    return _svg(fig)


def feeders_plot(run: Run) -> str:
    fig, axes = _figure(len(FEEDERS), 2.0)
    for ax, feeder in zip(axes, FEEDERS, strict=True):
        run.plot(ax, f"{feeder}.mass_flow_sp", "setpoint", color="#9e9e9e", ls="--")
        run.plot(ax, f"{feeder}.mass_flow_pv", f"{feeder} flow")
        _marks(ax, run.faults, run.alarm_ns)
        ax.set_ylabel(run.unit(f"{feeder}.mass_flow_pv"))
        ax.legend(loc="upper right", fontsize=8)
    _span(axes[0], run)
    return _svg(fig)


def events_plot(run: Run) -> str:
    fig, (ax,) = _figure(1, 2.2)
    lanes = {"faults": 2, "alarms": 1, "controller actions": 0}
    for fault in run.faults:
        end = fault.ended_s if fault.ended_s is not None else run.end_ns / 1e9
        a, b = _when(int(fault.onset_s * 1e9)), _when(int(end * 1e9))
        ax.broken_barh([(a, b - a)], (1.6, 0.8), color="#ce93d8")
        ax.text(a, 2.45, fault.kind, fontsize=7, rotation=20)
    alarms = [a for a in controller_alarms(run.rows) if a.raised]
    ax.scatter(
        [_when(int(a.time * 1e9)) for a in alarms], [1] * len(alarms), marker="v",
        color="#d32f2f", s=30,
    )  # fmt: skip
    acts = controller_actions(run.rows)
    ax.scatter(
        [_when(int(r["time"])) for r in acts], [0] * len(acts), marker="|", color="#00838f", s=80
    )
    ax.set_yticks(list(lanes.values()), list(lanes))
    ax.set_ylim(-0.6, 3.0)
    _span(ax, run)
    return _svg(fig)


# --- tables -------------------------------------------------------------------------------


def _table(head: Sequence[str], body: Iterable[Sequence[object]], cls: str = "") -> str:
    def cell(value: object) -> str:
        return "" if value is None else html.escape(str(value))

    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in body)
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table class="{cls}"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>'


def event_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[object, ...]]:
    """Faults, alarms and controller actions, each with its reason, in time order."""
    out: list[tuple[object, ...]] = []
    for r in rows:
        kind, source = r.get("kind"), r.get("source")
        if kind == "fault":
            what = f"{r.get('action', '').removeprefix('fault_')} {r.get('target')}"
            why = r.get("result")
        elif kind == "alarm" and source == "controller":
            what = f"alarm {r.get('action')} {r.get('target')}"
            why = r.get("reason")
        elif r in controller_actions([r]):
            change = f" {r.get('old')} -> {r.get('new')}" if r.get("new") is not None else ""
            outcome = "accepted" if r.get("accepted") is True else f"NOT DONE: {r.get('result')}"
            what = f"controller {r.get('action')} {r.get('target')}{change} ({outcome})"
            why = r.get("reason")
        else:
            continue
        out.append((_iso(int(r["time"])), kind, what, why))
    return out


def audit_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[object, ...]]:
    """The audit trail: who, what, old, new, when, why, outcome, whose record."""
    return [
        (
            r.get("user"),
            f"{r.get('action')} {r.get('target')}",
            r.get("old"),
            r.get("new"),
            _iso(int(r["time"])),
            r.get("reason"),
            "accepted" if r.get("accepted") is True else f"refused: {r.get('result')}",
            r.get("source"),
        )
        for r in rows
        if r.get("kind") == "audit"
    ]


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #212121; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #1565c0; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
td, th { border: 1px solid #cfd8dc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #eceff1; } .kpis td:last-child { text-align: right; }
.meta { color: #546e7a; } .note { color: #546e7a; font-size: .9em; }
.bad { color: #c62828; font-weight: bold; } svg { max-width: 100%; height: auto; }
"""


def render(run: Run) -> str:
    """The report as one HTML document."""
    kpis = score(run.source, run.rows)
    scores = kpis_json(kpis)
    found = kpis.completeness or completeness(run.source)
    oos = scores["oos_released"]
    verdict = (
        '<p class="bad">OOS tablets were released.</p>'
        if oos
        else "<p>No out-of-spec tablet was released (ground truth, simulation only).</p>"
    )
    per_tag = [(tag, count) for tag, count in found.stored_per_tag.items()]
    gaps = ", ".join(f"{a}..{b}" for a, b in found.gaps) or "none"
    body = {
        "state": state_plot(run),
        "api": api_plot(run)
        + '<p class="note">Shaded: diverted (gate not at accept, orange) and quarantined '
        "(held back in genealogy, red) windows. Dashed red: spec limits; dashed purple: fault "
        "onsets; dotted red: controller alarms.</p>",
        "tablets": tablets_plot(run),
        "feeders": feeders_plot(run),
        "events": events_plot(run)
        + _table(("when (UTC)", "kind", "what", "why"), event_rows(run.rows)),
        "kpis": verdict + _table(("score", "value"), kpi_rows(scores), "kpis"),
        "audit": _table(
            ("who", "what", "old", "new", "when (UTC)", "why", "outcome", "record of"),
            audit_rows(run.rows),
        ),
        "completeness": (
            f"<p>Samples published (the edge's sequence numbers {found.first_seq} to "
            f"{found.last_seq}): {found.published:,}; stored: {found.unique:,} "
            f"({found.stored_pct:.3f} %); lost: {found.lost:,}; stored twice: "
            f"{found.duplicates:,}; missing numbers: {html.escape(gaps)}.</p>"
            '<p class="note">A missing number is at most a lost sample, whose tag is not '
            "known from what was stored: a tag updated twice at one source time is one point "
            "(the second over the first), and an edge restarted mid-run skips unused numbers."
            "</p>" + _table(("tag", "samples stored"), per_tag)
        ),
    }
    toc = " · ".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title in SECTIONS)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Run report: {html.escape(run.source.site)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Run report: {html.escape(run.source.site)}</h1>",
        f'<p class="meta">{_iso(run.start_ns)} to {_iso(run.end_ns)} UTC (plant source times), '
        f"{scores['hours'] or 0:g} h; from InfluxDB {html.escape(run.source.url)}, database "
        f"{html.escape(run.source.db)}; made {_iso(time.time_ns())} "
        "UTC.</p>",
        f"<nav>{toc}</nav>",
    ]
    for key, title in SECTIONS:
        parts.append(f'<section id="{key}"><h2>{html.escape(title)}</h2>{body[key]}</section>')
    parts.append("</body></html>")
    return "\n".join(parts)


REPORT_TAGS = (
    "line.state",
    "nir.api_pct",
    "press.true_api_content",
    "press.tablet_weight",
    "press.hardness",
    "diverter.position_pv",
    *(f"{f}.mass_flow_{x}" for f in FEEDERS for x in ("pv", "sp")),
)


def read_run(source: Source) -> Run:
    """Read what the report shows, once."""
    data = series(source, REPORT_TAGS)
    times = [t for points in data.values() for t, _ in points[:1] + points[-1:]]
    start = min(times) if times else source.start_ns
    end = max(times) if times else source.start_ns
    registry = build_registry(load_layout(None).modules)
    return Run(source, registry, data, events(source), start, end)


def write_report(
    url: str,
    db: str,
    site: str,
    path: Path,
    *,
    token: str = "",
    start_ns: int = 0,
    end_ns: int = MAX_NS,
) -> None:
    """Read the run from InfluxDB and write its report to `path`."""
    run = read_run(Source(url, db, site, token, start_ns, end_ns))
    if not run.data.get("line.state") and not run.rows:
        raise InfluxQueryError(f"InfluxDB at {url} holds nothing of {site!r} in {db!r}")
    path.write_text(render(run), encoding="utf-8")


def report(
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")],
    begin: Annotated[
        str | None, typer.Option("--from", help="From this source time (ISO 8601, UTC).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Up to this source time (ISO 8601, UTC).")
    ] = None,
    site: Annotated[str, typer.Option(help="The site.")] = "site1",
    url: Annotated[
        str | None, typer.Option(help="InfluxDB's URL (default: PLANT_HISTORIAN_INFLUX_URL).")
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="Database or bucket (default: the historian's).")
    ] = None,
) -> None:
    """Write one self-contained HTML report of a run from what the historian stored."""
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        err.print("[red]error:[/] the report needs matplotlib: pip install -e '.[report]'")
        raise typer.Exit(2) from None
    try:
        the_url, the_db, token = historian_influx(url, db)
        write_report(
            the_url,
            the_db,
            site,
            output,
            token=token,
            start_ns=parse_instant(begin, "--from") if begin else 0,
            end_ns=parse_instant(end, "--to") if end else MAX_NS,
        )
    except (ValueError, InfluxQueryError, OSError) as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    print(f"report: {output.resolve()}")
