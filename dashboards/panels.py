"""Small builders for Grafana's dashboard JSON model (schemaVersion 39, Grafana 10.4-11).

Only what the plant's dashboards use: time series, stat, state timeline, table and bar chart
panels with raw InfluxQL targets, template variables and annotation queries. Everything is
plain JSON (dicts), so the generated files read like hand-written ones.

The output conforms to Grafana's own schema (npm @grafana/schema at the version docker-compose
ships; `python -m dashboards.schema_check` type-checks it): panel options and field configs
carry every key their plugin's config type requires, with Grafana's default where the
dashboards have no reason to differ (Grafana would fill the same defaults in on load).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.tags import Tag
from dashboards.units import grafana_unit

JSON = dict[str, Any]

DATASOURCE_UID = "pcmm-influxdb"  # fixed in provisioning/datasources/influxdb.yml
DATASOURCE: JSON = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
WIDTH = 24  # Grafana's grid is 24 columns wide


@dataclass
class Target:
    """One raw InfluxQL query of a panel; `alias` names its series in Grafana."""

    query: str
    alias: str = "$col"
    table: bool = False

    def json(self, ref_id: str) -> JSON:
        return {
            "datasource": DATASOURCE,
            "refId": ref_id,
            "rawQuery": True,
            "query": self.query,
            "alias": self.alias,
            "resultFormat": "table" if self.table else "time_series",
        }


def targets(items: Iterable[Target]) -> list[JSON]:
    return [target.json(chr(ord("A") + i)) for i, target in enumerate(items)]


def limit_thresholds(limits: tuple[float, float] | None) -> JSON:
    """Red outside the spec limits, green inside; plain green when a tag has none."""
    if limits is None:
        return {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
    low, high = limits
    return {
        "mode": "absolute",
        "steps": [
            {"color": "red", "value": None},
            {"color": "green", "value": low},
            {"color": "red", "value": high},
        ],
    }


def state_mappings(states: Sequence[str], colors: dict[str, str]) -> list[JSON]:
    """Value mappings for an enum tag: index -> state name (the historian stores the index)."""
    unknown = set(colors) - set(states)
    if unknown:  # a colour for a state the registry no longer has
        raise ValueError(f"colours for unknown states {sorted(unknown)}")
    options = {
        str(i): {"text": name, "index": i, "color": colors.get(name, "text")}
        for i, name in enumerate(states)
    }
    return [{"type": "value", "options": options}]


def tag_override(tag: Tag, *, right_axis: bool = False, limits: bool = True) -> JSON:
    """Field config for the series of one tag: its unit, axis and spec-limit lines."""
    props: list[JSON] = [{"id": "unit", "value": grafana_unit(tag.unit)}]
    if right_axis:
        props.append({"id": "custom.axisPlacement", "value": "right"})
    if limits and tag.limits is not None:
        props.append({"id": "thresholds", "value": limit_thresholds(tag.limits)})
        props.append({"id": "custom.thresholdsStyle", "value": {"mode": "dashed"}})
    return {"matcher": {"id": "byName", "options": tag.id}, "properties": props}


@dataclass
class Panel:
    """A panel before layout: its kind, title, size, queries and field config."""

    kind: str
    title: str
    items: list[Target]
    width: int = 12
    height: int = 8
    description: str = ""
    unit: str | None = None
    thresholds: JSON | None = None
    mappings: list[JSON] = field(default_factory=list)
    overrides: list[JSON] = field(default_factory=list)
    options: JSON = field(default_factory=dict)
    custom: JSON = field(default_factory=dict)
    decimals: int | None = None
    transformations: list[JSON] = field(default_factory=list)

    def json(self, panel_id: int, x: int, y: int) -> JSON:
        defaults: JSON = {"custom": self.custom, "mappings": self.mappings}
        if self.unit is not None:
            defaults["unit"] = self.unit
        if self.thresholds is not None:
            defaults["thresholds"] = self.thresholds
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        panel: JSON = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "targets": targets(self.items),
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
        }
        if self.transformations:
            panel["transformations"] = self.transformations
        return panel


def legend_and_tooltip() -> JSON:
    """The legend and tooltip options time series and state timelines require (list legend
    below the graph, no legend values; Grafana's default single-series tooltip)."""
    return {
        "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []},
        "tooltip": {"mode": "single", "sort": "none"},
    }


def timeseries(title: str, items: list[Target], **kwargs: Any) -> Panel:
    kwargs.setdefault("options", legend_and_tooltip())
    kwargs.setdefault("custom", {"lineWidth": 1, "spanNulls": 30_000, "fillOpacity": 0})
    return Panel("timeseries", title, items, **kwargs)


def stat(title: str, items: list[Target], **kwargs: Any) -> Panel:
    kwargs.setdefault("width", 4)
    kwargs.setdefault("height", 4)
    kwargs.setdefault(
        "options",
        {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            # Grafana's defaults for the rest of the stat panel's required options
            "justifyMode": "auto",
            "orientation": "auto",
            "wideLayout": True,
            "showPercentChange": False,
            "percentChangeColorMode": "standard",
        },
    )
    return Panel("stat", title, items, **kwargs)


def state_timeline(title: str, items: list[Target], **kwargs: Any) -> Panel:
    kwargs.setdefault(
        "options",
        {
            "showValue": "auto",
            "mergeValues": True,
            "rowHeight": 0.8,
            **legend_and_tooltip(),
        },
    )
    kwargs.setdefault("custom", {"fillOpacity": 80, "lineWidth": 0})
    return Panel("state-timeline", title, items, **kwargs)


def table(title: str, items: list[Target], **kwargs: Any) -> Panel:
    kwargs.setdefault("width", WIDTH)
    kwargs.setdefault("options", {"showHeader": True, "cellHeight": "sm", "frameIndex": 0})
    # Grafana's defaults for the table's required field config (defaultTableFieldOptions)
    kwargs.setdefault(
        "custom", {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}
    )
    return Panel("table", title, items, **kwargs)


def bars(title: str, items: list[Target], **kwargs: Any) -> Panel:
    kwargs.setdefault("custom", {"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1})
    return timeseries(title, items, **kwargs)


def layout(panels: Sequence[Panel]) -> list[JSON]:
    """Place panels left to right, wrapping at the grid's width; ids in reading order."""
    placed: list[JSON] = []
    x = y = row_height = 0
    for i, panel in enumerate(panels, start=1):
        if x + panel.width > WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append(panel.json(i, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return placed


def query_variable(name: str, label: str, query: str, *, multi: bool = False) -> JSON:
    """A template variable filled from InfluxDB (SHOW TAG VALUES ...).

    No `current` (Grafana selects the first value, or All, on load) and no `definition` (a
    display copy of the query that Grafana's schema does not have): an empty `current: {}`
    is not a valid selection in the schema (its text and value are required).
    """
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "refresh": 1,  # on dashboard load: a new site appears without editing anything
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "options": [],
    }


def custom_variable(name: str, label: str, values: Sequence[str]) -> JSON:
    """A template variable with fixed values (all selected by default)."""
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(values),
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
    }


def influx_annotation(name: str, color: str, query: str, *, title: str, text: str) -> JSON:
    """Annotations from an InfluxQL query: one mark per row, columns for title, text and tags.

    Everything is in `target`, as Grafana's InfluxDB annotation editor saves it. Grafana reads
    the column names only from a target marked `fromAnnotations`; without it the query runs as
    a plain one and its rows are mapped by field name and type instead. (The legacy top-level
    `query`/`titleColumn`/... form is not in Grafana's schema, and Grafana ignores it when
    `target` has a query.)
    """
    return {
        "name": name,
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": color,
        "target": {
            "refId": "Anno",
            "query": query,
            "rawQuery": True,
            "fromAnnotations": True,
            "titleColumn": title,
            "textColumn": text,
            "tagsColumn": "kind",
        },
    }


def grafana_annotations() -> JSON:
    """Grafana's own annotations (those `plant grafana push --annotate` writes, tag 'pcmm')."""
    return {
        "builtIn": 1,
        "name": "Annotations & Alerts",
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "type": "dashboard",
        "target": {
            "refId": "Anno",
            "limit": 100,
            "matchAny": True,
            "tags": ["pcmm"],
            "type": "tags",
        },
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[Panel],
    variables: Sequence[JSON],
    annotations: Sequence[JSON],
    *,
    time_from: str = "now-1h",
) -> JSON:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["pcmm"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,  # shared crosshair: a fault's effect lines up across panels
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "10s",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": list(variables)},
        "annotations": {"list": [grafana_annotations(), *annotations]},
        "links": [
            {
                "title": "Plant dashboards",
                "type": "dashboards",
                "tags": ["pcmm"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
            }
        ],
        "panels": layout(panels),
    }
