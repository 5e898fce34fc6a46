"""InfluxQL for the dashboards, derived from registry tags and the historian's schema.

The schema (bridge/historian/points.py, the historian's README) is:

    telemetry,module=M,site=S <name>=<value>,<name>_seq=..,<name>_quality=".." <source time>
    truth,module=M,site=S      the same, for the simulation's ground truth
    events,kind=K,site=S,slot=..,source=X user=..,action=..,target=..,old=..,new=..,
                                          reason=..,result=..,accepted=<bool>
    events,hash=H,kind=audit,log=L,site=S,source=X   the same fields, and prev_hash=..
    pipeline,instance=I,service=X,site=S <metric>=<float>,...

Only InfluxQL is used (it runs on InfluxDB 1.8+, 2.x through the DBRP mapping, and 3.x), and
only Grafana's own macros ($timeFilter, $__interval) and the dashboards' variables ($site,
$module, $kind). Every column a time-series query returns is aliased to the tag id (`AS
"press.tablet_weight"`), so panels, overrides and tests can find a series by its tag id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.tags import Tag

# Measurements of the historian's schema (bridge/historian/points.py spells the same names;
# tests/integration/test_dashboard_queries.py writes through that module and reads them here).
TELEMETRY = "telemetry"
TRUTH = "truth"
EVENTS = "events"
PIPELINE = "pipeline"

# Event fields and tags, in the order the audit trail shows them (ALCOA+: who, what, old, new,
# when, why, result).
EVENT_FIELDS = ("user", "action", "target", "old", "new", "reason", "result", "accepted")

SITE = '"site" =~ /^$site$/'  # $site may be one site or several: always a regex match
WINDOW = "$timeFilter"


def quote(identifier: str) -> str:
    """An InfluxQL identifier in double quotes (tag and field names may hold dots)."""
    return '"' + identifier.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(text: str) -> str:
    """An InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def by_module(tags: Iterable[Tag]) -> dict[str, list[Tag]]:
    """Tags grouped by module, in first-seen order: one query per module (a row is a module)."""
    groups: dict[str, list[Tag]] = {}
    for tag in tags:
        groups.setdefault(tag.module, []).append(tag)
    return groups


def select_tags(
    tags: Sequence[Tag],
    *,
    measurement: str = TELEMETRY,
    aggregate: str = "mean",
    per_site: bool = False,
    bucketed: bool = True,
) -> str:
    """One query for tags of one module: `aggregate(field) AS "<tag id>"` per tag.

    `bucketed` groups by `$__interval` (time series); otherwise the aggregate spans the whole
    time range (stat panels). `per_site` adds `GROUP BY "site"` (the sites dashboard).
    """
    modules = {tag.module for tag in tags}
    if len(modules) != 1:
        raise ValueError(f"one query reads one module, not {sorted(modules)}")
    columns = ", ".join(f"{aggregate}({quote(tag.name)}) AS {quote(tag.id)}" for tag in tags)
    where = f"{SITE} AND {quote('module')} = {literal(tags[0].module)} AND {WINDOW}"
    return f"SELECT {columns} FROM {quote(measurement)} WHERE {where}{_group(bucketed, per_site)}"


def counter_increase(tag: Tag, *, measurement: str = TELEMETRY, per_site: bool = False) -> str:
    """How much a counter grew per interval (counters restart at 0 with the plant)."""
    return (
        f"SELECT non_negative_difference(last({quote(tag.name)})) AS {quote(tag.id)} "
        f"FROM {quote(measurement)} WHERE {SITE} AND {quote('module')} = "
        f"{literal(tag.module)} AND {WINDOW}{_group(True, per_site)}"
    )


def spread(tag: Tag, *, measurement: str = TELEMETRY, per_site: bool = False) -> str:
    """How much a counter grew over the whole time range (a KPI)."""
    return (
        f"SELECT spread({quote(tag.name)}) AS {quote(tag.id)} FROM {quote(measurement)} "
        f"WHERE {SITE} AND {quote('module')} = {literal(tag.module)} AND {WINDOW}"
        f"{_group(False, per_site)}"
    )


def rsd(tag: Tag, *, per_site: bool = False) -> str:
    """Relative standard deviation of a tag over the time range, % (blend uniformity)."""
    name = quote(tag.name)
    return (
        f"SELECT stddev({name}) / mean({name}) * 100 AS {quote(tag.id + ' RSD')} "
        f"FROM {quote(TELEMETRY)} WHERE {SITE} AND {quote('module')} = {literal(tag.module)} "
        f"AND {WINDOW}{_group(False, per_site)}"
    )


def module_fields(names: Sequence[str], aggregate: str = "mean") -> str:
    """Fields of whichever module `$module` names: a regex over the registry's tag names."""
    pattern = "|".join(names)
    return (
        f"SELECT {aggregate}(/^({pattern})$/) FROM {quote(TELEMETRY)} "
        f"WHERE {SITE} AND {quote('module')} =~ /^$module$/ AND {WINDOW}"
        " GROUP BY time($__interval) fill(none)"
    )


def bad_quality(names: Sequence[str]) -> str:
    """Samples of `$module` that were not Good, per interval (`<name>_quality` is only written
    when the quality is not Good)."""
    pattern = "|".join(names)
    return (
        f"SELECT count(/^({pattern})_quality$/) FROM {quote(TELEMETRY)} "
        f"WHERE {SITE} AND {quote('module')} =~ /^$module$/ AND {WINDOW}"
        " GROUP BY time($__interval) fill(none)"
    )


def events(condition: str, fields: Sequence[str] = EVENT_FIELDS, limit: int = 500) -> str:
    """Events matching `condition`, newest first, for tables and annotations."""
    columns = ", ".join(quote(name) for name in (*fields, "kind", "source"))
    return (
        f"SELECT {columns} FROM {quote(EVENTS)} WHERE {SITE} AND ({condition}) AND {WINDOW} "
        f"ORDER BY time DESC LIMIT {limit}"
    )


def event_counts(condition: str, per_kind: bool = True) -> str:
    """Events per interval (per kind), for bar charts."""
    group = ', "kind"' if per_kind else ""
    return (
        f'SELECT count("action") AS "events" FROM {quote(EVENTS)} '
        f"WHERE {SITE} AND ({condition}) AND {WINDOW} "
        f"GROUP BY time($__interval){group} fill(none)"
    )


def pipeline(metric: str, *, counter: bool = False) -> str:
    """A bridge self-metric per service instance: a gauge as is, a counter as its rate /s.

    The historian reports under its own site level (one historian serves every site), so
    `$site` selects the sites' edges and every historian.
    """
    value = (
        f"non_negative_derivative(max({quote(metric)}), 1s)"
        if counter
        else f"mean({quote(metric)})"
    )
    return (
        f"SELECT {value} AS {quote(metric)} FROM {quote(PIPELINE)} "
        f"WHERE ({SITE} OR \"service\" = 'historian') AND {WINDOW} "
        'GROUP BY time($__interval), "service", "instance" fill(none)'
    )


def tag_values(key: str, where: str = "") -> str:
    """A template variable's query: the values of one tag key of the telemetry measurement."""
    suffix = f" WHERE {where}" if where else ""
    return f"SHOW TAG VALUES FROM {quote(TELEMETRY)} WITH KEY = {quote(key)}{suffix}"


def _group(bucketed: bool, per_site: bool) -> str:
    keys = (["time($__interval)"] if bucketed else []) + (['"site"'] if per_site else [])
    if not keys:
        return ""
    return " GROUP BY " + ", ".join(keys) + (" fill(none)" if bucketed else "")
