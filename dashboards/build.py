"""The plant's seven Grafana dashboards, built from the tag registry of the default pod layout.

Tags are picked by registry id through `pick`, which fails generation (and the unit test) if a
tag is renamed or removed; field names, module names, units, spec limits, enum states and
descriptions in the JSON all come from the picked `Tag` objects. Each dashboard has a `$site`
variable and shows faults, setpoint changes and alarms from the `events` measurement as
annotations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.layout import load_layout
from core.tags import LINE_STATES, Access, DataType, Tag, TagRegistry, build_registry
from core.topics import EVENT_KINDS
from dashboards import queries as q
from dashboards.panels import (
    JSON,
    Panel,
    Target,
    bars,
    custom_variable,
    dashboard,
    influx_annotation,
    limit_thresholds,
    query_variable,
    stat,
    state_mappings,
    state_timeline,
    table,
    tag_override,
    timeseries,
)
from dashboards.units import grafana_unit

LINE_STATE_COLORS = {
    "idle": "text",
    "starting": "blue",
    "producing": "green",
    "diverting": "orange",
    "stopping": "yellow",
    "stopped": "text",
    "faulted": "red",
}
DIVERTER_COLORS = {"accept": "green", "moving": "yellow", "reject": "orange"}

# Conditions on the events measurement. The twin audits fault injections as inject_fault,
# clear_fault and fault_ended; the edge may also publish them as kind=fault.
FAULTS = '"kind" = \'fault\' OR "action" =~ /fault/'
SETPOINTS = "\"kind\" = 'audit' AND \"action\" = 'write'"
ALARMS = "\"kind\" = 'alarm'"
SIMULATION_ONLY = (
    "SIMULATION ONLY: ground truth from the twin (InfluxDB measurement `truth`). "
    "A real plant cannot measure this; it scores the controller and the diverter."
)


def registry() -> TagRegistry:
    """The registry the dashboards are drawn from: the shipped default pod."""
    return build_registry(load_layout().modules)


@dataclass
class Picker:
    """Looks tags up by id, so that a renamed tag breaks generation instead of a panel."""

    tags: TagRegistry

    def __call__(self, tag_id: str) -> Tag:
        try:
            return self.tags[tag_id]
        except KeyError:
            raise KeyError(f"dashboards use {tag_id!r}, which the registry does not have") from None


def series(
    tags: list[Tag], *, measurement: str = q.TELEMETRY, aggregate: str = "mean"
) -> list[Target]:
    """One target per module (a telemetry row is one module's samples)."""
    return [
        q_target(q.select_tags(group, measurement=measurement, aggregate=aggregate))
        for group in q.by_module(tags).values()
    ]


def q_target(query: str, alias: str = "$col", table_format: bool = False) -> Target:
    return Target(query, alias=alias, table=table_format)


def event_annotations() -> list[JSON]:
    """Faults, setpoint changes and alarms, from the events the historian stored."""
    return [
        influx_annotation(
            "Faults",
            "red",
            q.events(FAULTS, ("action", "target", "reason", "user")),
            title="action",
            text="target",
        ),
        influx_annotation(
            "Setpoint changes",
            "blue",
            q.events(SETPOINTS, ("target", "new", "user", "reason")),
            title="target",
            text="new",
        ),
        influx_annotation(
            "Alarms",
            "orange",
            q.events(ALARMS, ("target", "reason", "result")),
            title="target",
            text="reason",
        ),
    ]


def site_variable(*, multi: bool = False) -> JSON:
    return query_variable("site", "Site", q.tag_values("site"), multi=multi)


def loop_panel(title: str, left: list[Tag], right: list[Tag], description: str) -> Panel:
    """Setpoint vs measurement of one control loop: left axis the actuator, right the result."""
    overrides = [tag_override(tag) for tag in left]
    overrides += [tag_override(tag, right_axis=True) for tag in right]
    return timeseries(
        title, series(left + right), overrides=overrides, description=description, height=9
    )


def stat_tag(tag: Tag, *, measurement: str = q.TELEMETRY, title: str = "", **kw: object) -> Panel:
    """The latest value of one tag, coloured by its spec limits and named by its states."""
    aggregate = "last" if tag.states or tag.access is Access.STATE else "mean"
    query = q.select_tags([tag], measurement=measurement, aggregate=aggregate, bucketed=True)
    extra: dict[str, object] = {"thresholds": limit_thresholds(tag.limits)}
    if tag.states:
        colors = LINE_STATE_COLORS if tag.states == LINE_STATES else DIVERTER_COLORS
        extra["mappings"] = state_mappings(tag.states, colors)
    extra.update(kw)
    return stat(
        title or tag.description,
        [q_target(query)],
        unit=grafana_unit(tag.unit),
        description=f"{tag.id}: {tag.description}",
        **extra,
    )


def enum_timeline(title: str, tags: list[Tag], *, per_site: bool = False) -> Panel:
    mappings: list[JSON] = []
    for tag in tags:
        colors = LINE_STATE_COLORS if tag.states == LINE_STATES else DIVERTER_COLORS
        mappings += state_mappings(tag.states, colors)
    items = [
        q_target(q.select_tags(group, aggregate="last", per_site=per_site), alias=_alias(per_site))
        for group in q.by_module(tags).values()
    ]
    return state_timeline(title, items, mappings=mappings, width=24, height=6)


def _alias(per_site: bool) -> str:
    return "$col $tag_site" if per_site else "$col"


# The dashboards --------------------------------------------------------------------------


def overview(pick: Picker) -> JSON:
    state, faults = pick("line.state"), pick("line.active_faults")
    weight, api, hardness = pick("press.tablet_weight"), pick("nir.api_pct"), pick("press.hardness")
    position = pick("diverter.position_pv")
    feeders = [
        pick(f"{module}.mass_flow_pv")
        for module in pick.tags.modules
        if pick.tags.of_module(module)[0].module_type == "feeder"
    ]
    throughput = pick("blender.throughput")
    rate = pick("press.production_rate")
    panels = [
        stat_tag(state, title="Line state", width=5),
        stat_tag(faults, title="Active faults", thresholds=_count_thresholds(), width=3),
        stat_tag(throughput, title="Throughput"),
        stat_tag(rate, title="Production rate"),
        stat_tag(api, title="API (NIR)"),
        stat_tag(position, title="Diverter", width=4),
        timeseries(
            "Throughput: feeders and blender",
            series([*feeders, throughput]),
            unit=grafana_unit(throughput.unit),
            description="Mass flow of each feeder (loss in weight) and out of the blender.",
        ),
        timeseries(
            "API content vs spec limits",
            series([api]),
            overrides=[tag_override(api)],
            description=f"{api.description}; dashed lines: spec limits {api.limits}.",
        ),
        timeseries(
            "Tablet weight vs spec limits",
            series([weight]),
            overrides=[tag_override(weight)],
            description=f"{weight.description}; dashed lines: spec limits {weight.limits}.",
        ),
        timeseries(
            "Hardness vs spec limits",
            series([hardness]),
            overrides=[tag_override(hardness)],
            description=f"{hardness.description}; dashed lines: spec limits {hardness.limits}.",
        ),
        enum_timeline("Line state and diverter", [state, position]),
        table(
            "Faults and alarms",
            [q_target(q.events(f"{FAULTS} OR {ALARMS}"), table_format=True)],
            description="Fault injections, clearances and ends, and the controller's alarms.",
            height=8,
        ),
    ]
    return dashboard(
        "pcmm-overview",
        "Plant overview",
        "State, throughput, quality against spec, diverter, faults and alarms of one site.",
        panels,
        [site_variable()],
        event_annotations(),
    )


def module_detail(pick: Picker) -> JSON:
    """Every tag of `$module`, one panel per unit (a module shows in the units it has)."""
    units: dict[str, list[Tag]] = {}
    for tag in pick.tags.plant_tags():
        units.setdefault(tag.unit.symbol, [])
        if tag.name not in {t.name for t in units[tag.unit.symbol]}:
            units[tag.unit.symbol].append(tag)
    panels: list[Panel] = []
    for tags in units.values():
        unit = tags[0].unit
        # Enums are state panels elsewhere; InfluxQL cannot average a boolean field.
        numeric = [t for t in tags if not t.states and t.data_type is not DataType.BOOL]
        if not numeric:
            continue
        names = sorted({t.name for t in numeric})
        title = f"{unit.name} ({unit.symbol})" if unit.symbol else "counts and flags"
        panels.append(
            timeseries(
                title[:1].upper() + title[1:],
                [q_target(q.module_fields(names), alias="$col")],
                unit=grafana_unit(unit),
                description="Tags of $module in this unit: "
                + "; ".join(f"{t.name}: {t.description}" for t in numeric),
                width=8,
            )
        )
    all_names = sorted({t.name for t in pick.tags.plant_tags()})
    panels.append(
        bars(
            "Samples not Good (uncertain or bad)",
            [q_target(q.bad_quality(all_names))],
            description="Samples of $module whose OPC UA quality was not Good, per interval.",
            width=24,
        )
    )
    module_var = query_variable("module", "Module", q.tag_values("module", q.SITE))
    return dashboard(
        "pcmm-module",
        "Module detail",
        "Every tag of one module ($module), grouped by unit, and its data quality.",
        panels,
        [site_variable(), module_var],
        event_annotations(),
    )


def control_quality(pick: Picker) -> JSON:
    press = {
        name: pick(f"press.{name}")
        for name in (
            "fill_depth_sp",
            "fill_depth_pv",
            "tablet_weight",
            "turret_speed_sp",
            "turret_speed_pv",
            "main_gap_sp",
            "hardness",
            "true_api_content",
            "tablets_total",
        )
    }
    level = pick("feed_frame.level")
    api_sp, api_pv = pick("api_feeder.mass_flow_sp"), pick("api_feeder.mass_flow_pv")
    nir = pick("nir.api_pct")
    speed_sp, speed_pv = pick("blender.speed_sp"), pick("blender.speed_pv")
    residence = pick("blender.residence_time")
    position, state = pick("diverter.position_pv"), pick("line.state")
    diverted_mass, diverted = pick("diverter.diverted_mass"), pick("diverter.diverted_count")
    oos_mass, oos_accepted = pick("diverter.true_oos_mass"), pick("diverter.true_oos_accepted")
    panels = [
        loop_panel(
            "Weight loop: fill depth and tablet weight",
            [press["fill_depth_sp"], press["fill_depth_pv"]],
            [press["tablet_weight"]],
            "L1: tablet weight via fill depth. Left: fill depth SP/PV; right: weight, spec dashed.",
        ),
        loop_panel(
            "Rate loop: turret speed and hopper level",
            [press["turret_speed_sp"], press["turret_speed_pv"]],
            [level],
            "L1: production rate via turret speed matched to the feed; the hopper level shows "
            "the mismatch.",
        ),
        loop_panel(
            "API loop: API feeder setpoint and NIR",
            [api_sp, api_pv],
            [nir],
            "L2: API concentration from NIR by trimming the API feeder; spec dashed.",
        ),
        loop_panel(
            "Hardness loop: punch gap and hardness",
            [press["main_gap_sp"]],
            [press["hardness"]],
            "L1: hardness via the main compression punch gap; spec dashed.",
        ),
        loop_panel(
            "Blender: impeller speed and residence time",
            [speed_sp, speed_pv],
            [residence],
            "Impeller speed SP/PV; right: mean residence time (hold-up / throughput).",
        ),
        timeseries(
            "Diverted per interval",
            [q_target(q.counter_increase(diverted))],
            unit=grafana_unit(diverted.unit),
            description="Tablets sent to reject in each interval.",
            custom={"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1},
        ),
        enum_timeline("Diversion windows", [position, state]),
        timeseries(
            "SIMULATION ONLY: true API content of the tablets made",
            series([press["true_api_content"]], measurement=q.TRUTH),
            overrides=[tag_override(press["true_api_content"])],
            description=SIMULATION_ONLY,
        ),
        timeseries(
            "SIMULATION ONLY: true OOS mass vs diverted mass",
            [
                *series([oos_mass], measurement=q.TRUTH, aggregate="last"),
                *series([diverted_mass], aggregate="last"),
            ],
            unit=grafana_unit(diverted_mass.unit),
            description=SIMULATION_ONLY + " Diverted mass is a plant tag; tight diversion keeps "
            "the two close.",
        ),
        stat_tag(press["tablets_total"], title="Tablets made (total)", width=4),
        stat(
            "Diverted in range",
            [q_target(q.spread(diverted_mass))],
            unit=grafana_unit(diverted_mass.unit),
            description="Mass sent to reject over the time range.",
        ),
        stat(
            "NIR RSD in range",
            [q_target(q.rsd(nir))],
            unit="percent",
            decimals=2,
            thresholds={
                "mode": "absolute",
                "steps": [{"color": "green", "value": None}, {"color": "red", "value": 5.0}],
            },
            description="Relative SD of the NIR API reading over the range; blend uniformity "
            "limit 5 % (FDA 2003 draft guidance).",
        ),
        stat(
            "SIMULATION ONLY: true OOS mass in range",
            [q_target(q.spread(oos_mass, measurement=q.TRUTH))],
            unit=grafana_unit(oos_mass.unit),
            description=SIMULATION_ONLY,
        ),
        stat(
            "SIMULATION ONLY: OOS tablets accepted",
            [q_target(q.select_tags([oos_accepted], measurement=q.TRUTH, aggregate="last"))],
            thresholds=_count_thresholds(),
            description=SIMULATION_ONLY + " Must stay 0.",
            width=8,
        ),
    ]
    return dashboard(
        "pcmm-control",
        "Control and quality",
        "Setpoint vs measurement per loop, diversion windows, simulation-only ground truth, KPIs.",
        panels,
        [site_variable()],
        event_annotations(),
    )


def audit_trail(_: Picker) -> JSON:
    panels = [
        bars(
            "Events per interval",
            [q_target(q.event_counts('"kind" =~ /^$kind$/'), alias="$tag_kind")],
            width=16,
            description="Audit records, alarms, state changes and faults per interval.",
        ),
        stat(
            "Refused commands",
            [
                q_target(
                    'SELECT count("action") AS "refused" FROM "events" WHERE '
                    f'{q.SITE} AND "accepted" = false AND {q.WINDOW}'
                )
            ],
            thresholds=_count_thresholds(),
            description="Commands and fault injections the plant refused, in the range.",
            width=8,
            height=8,
        ),
        table(
            "Audit trail: who, what, old, new, when, why, result",
            [q_target(q.events('"kind" =~ /^$kind$/', limit=1000), table_format=True)],
            description="Every command, fault and alarm, accepted or refused (ALCOA+, Annex 11). "
            "Time is the plant's source time.",
            height=16,
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "indexByName": {
                            name: i for i, name in enumerate(("Time", *q.EVENT_FIELDS))
                        },
                        "renameByName": {
                            "Time": "when",
                            "target": "what",
                            "user": "who",
                            "reason": "why",
                        },
                    },
                }
            ],
        ),
    ]
    return dashboard(
        "pcmm-audit",
        "Alarms and audit trail",
        "The plant's audit trail and alarms from the events measurement.",
        panels,
        [site_variable(), custom_variable("kind", "Kind", EVENT_KINDS)],
        event_annotations(),
        time_from="now-6h",
    )


# Alarm management (ISA-18.2 clause 16, EEMUA 191) from the alarm transitions the historian
# stores (events, kind=alarm, with priority, level, state and the alarm as a tag). The same
# measures as `plant kpi` (core/alarm_measures.py), in InfluxQL.
TRANSITIONS = '"kind" = \'alarm\' AND "priority" > 0'
ANNUNCIATED = (
    f"{TRANSITIONS} AND (\"action\" = 'raise' OR \"action\" = 'level') "
    "AND \"state\" != 'shelved' AND \"state\" != 'out_of_service'"
)

ACKNOWLEDGED = TRANSITIONS + " AND \"action\" = 'acknowledge'"
HIGH_OR_CRITICAL = ANNUNCIATED + ' AND "priority" >= 700'


def _alarms_where(condition: str) -> str:
    return f'FROM "{q.EVENTS}" WHERE {q.SITE} AND {condition} AND {q.WINDOW}'


def _rate_thresholds() -> JSON:
    # ISA-18.2 table 5: about 1 per 10 min very likely acceptable, 2 the most manageable;
    # more than 10 is a flood.
    return {
        "mode": "absolute",
        "steps": [
            {"color": "green", "value": None},
            {"color": "yellow", "value": 2},
            {"color": "orange", "value": 5},
            {"color": "red", "value": 11},
        ],
    }


def alarm_management(_: Picker) -> JSON:
    where = _alarms_where
    panels = [
        bars(
            "Alarms per 10 minutes",
            [
                q_target(
                    f'SELECT count("priority") AS "alarms" {where(ANNUNCIATED)} '
                    "GROUP BY time(10m) fill(0)"
                )
            ],
            thresholds=_rate_thresholds(),
            description="Alarms annunciated (raised, or worse, not shelved or out of service) "
            "per 10 minutes. ISA-18.2: about 1 is acceptable, 2 the most manageable; more than "
            "10 is a flood.",
            width=16,
        ),
        stat(
            "Floods (more than 10 alarms in 10 min)",
            [
                q_target(
                    'SELECT count("count") AS "floods" FROM (SELECT count("priority") '
                    f'{where(ANNUNCIATED)} GROUP BY time(10m)) WHERE "count" > 10'
                )
            ],
            thresholds=_count_thresholds(),
            description="10-minute windows with more than 10 alarms (ISA-18.2 16.5; target: "
            "under 1 % of the time).",
            width=8,
            height=8,
        ),
        stat(
            "Time to acknowledge",
            [
                q_target(
                    'SELECT mean("elapsed_s") AS "mean", percentile("elapsed_s", 90) AS "p90" '
                    + where(ACKNOWLEDGED)
                )
            ],
            unit="s",
            description="From an alarm's raise (or escalation) to its acknowledgement, plant "
            "seconds: mean and 90th percentile.",
            width=8,
            height=6,
        ),
        stat(
            "Annunciated, and of high or critical priority",
            [
                q_target(f'SELECT count("priority") AS "alarms" {where(ANNUNCIATED)}'),
                q_target(
                    'SELECT count("priority") AS "high or critical" ' + where(HIGH_OR_CRITICAL)
                ),
            ],
            description="ISA-18.2 16.4: about 80 % low, 15 % high, 5 % critical of all alarms.",
            width=8,
            height=6,
        ),
        table(
            "Top 10 alarms",
            [
                q_target(
                    'SELECT top("count", "alarm", 10) AS "raised" FROM (SELECT count("priority")'
                    f' {where(ANNUNCIATED)} GROUP BY "alarm")',
                    table_format=True,
                )
            ],
            description="The alarms raised most often: the first candidates for rationalisation "
            "(ISA-18.2 16.4: the top 10 are often 25-95 % of the load).",
            width=8,
            height=10,
        ),
        table(
            "Chattering alarms (3 or more raises in a minute)",
            [
                q_target(
                    'SELECT max("count") AS "raises" FROM (SELECT count("priority") '
                    f'{where(ANNUNCIATED)} GROUP BY time(1m), "alarm") '
                    'WHERE "count" >= 3 GROUP BY "alarm"',
                    table_format=True,
                )
            ],
            description="An alarm raised 3 or more times within a minute (ISA-18.2 16.6, "
            "EEMUA 191): tune its deadband or delays.",
            width=8,
            height=10,
        ),
        table(
            "Standing alarms (stale when active over 24 h)",
            [
                q_target(
                    'SELECT last("state") AS "state", last("level") AS "level", '
                    f'last("priority") AS "priority" {where(TRANSITIONS)} GROUP BY "alarm"',
                    table_format=True,
                )
            ],
            description="Each alarm's state after its last transition, and when that was; an "
            "alarm active for over 24 hours is stale (ISA-18.2 16.7).",
            width=8,
            height=10,
            transformations=[
                {
                    "id": "filterByValue",
                    "options": {
                        "type": "include",
                        "match": "any",
                        "filters": [
                            {
                                "fieldName": "state",
                                "config": {"id": "regex", "options": {"value": "^active"}},
                            }
                        ],
                    },
                }
            ],
        ),
        table(
            "Alarm transitions: who acknowledged, shelved, commented",
            [
                q_target(
                    'SELECT "target", "action", "state", "level", "priority", "user", "reason", '
                    f'"result" {where(TRANSITIONS)} ORDER BY time DESC LIMIT 500',
                    table_format=True,
                )
            ],
            description="Every transition of every alarm, with its user and comment (OPC UA "
            "Part 9 condition events, through the edge).",
            height=12,
        ),
    ]
    return dashboard(
        "pcmm-alarm-management",
        "Alarm management",
        "ISA-18.2 / EEMUA 191 alarm load: rate, floods, chattering, standing alarms, time to "
        "acknowledge, the top 10.",
        panels,
        [site_variable()],
        event_annotations(),
        time_from="now-12h",
    )


# Self-metrics of the bridge services (bridge/metrics.py): gauges, then counters shown as rates.
PIPELINE_GAUGES = (
    ("lag_ms", "Lag to InfluxDB", "ms"),
    ("spool_depth", "Spool depth", "short"),
    ("deadletters_waiting", "Dead letters waiting to be announced", "short"),
    ("spool_moved_aside", "Corrupt spools moved aside", "short"),
)
PIPELINE_RATES = (
    ("written", "Written /s"),
    ("received", "Received /s"),
    ("retries", "Retries /s"),
    ("dead_letters", "Dead letters /s"),
    ("dropped", "Dropped /s"),
)


def pipeline_health(_: Picker) -> JSON:
    panels = [
        timeseries(
            title,
            [q_target(q.pipeline(metric), alias="$tag_service $tag_instance")],
            unit=unit,
            description=f"Bridge self-metric `{metric}` per service instance.",
        )
        for metric, title, unit in PIPELINE_GAUGES
    ]
    panels += [
        timeseries(
            title,
            [q_target(q.pipeline(metric, counter=True), alias="$tag_service $tag_instance")],
            unit="short",
            description=f"Rate of the bridge counter `{metric}` per service instance.",
            width=8 if i < 3 else 12,
        )
        for i, (metric, title) in enumerate(PIPELINE_RATES)
    ]
    return dashboard(
        "pcmm-pipeline",
        "Pipeline health",
        "Self-metrics of the edge and the historian: lag, spool depth, throughput, retries, "
        "dead letters and drops.",
        panels,
        [site_variable()],
        event_annotations(),
    )


def sites(pick: Picker) -> JSON:
    compare = [
        pick(i)
        for i in (
            "blender.throughput",
            "nir.api_pct",
            "press.tablet_weight",
            "press.hardness",
        )
    ]
    panels: list[Panel] = [
        timeseries(
            f"{tag.description} by site",
            [q_target(q.select_tags([tag], per_site=True), alias="$tag_site")],
            overrides=[],
            unit=grafana_unit(tag.unit),
            thresholds=limit_thresholds(tag.limits) if tag.limits else None,
            custom={
                "lineWidth": 1,
                "spanNulls": 30_000,
                "thresholdsStyle": {"mode": "dashed" if tag.limits else "off"},
            },
            description=f"{tag.id} per site" + (f"; spec {tag.limits}" if tag.limits else ""),
        )
        for tag in compare
    ]
    panels.append(enum_timeline("Line state by site", [pick("line.state")], per_site=True))
    nir, diverted = pick("nir.api_pct"), pick("diverter.diverted_mass")
    made = pick("press.tablets_total")
    panels.append(
        table(
            "Site KPIs over the range",
            [
                q_target(q.spread(made, per_site=True), table_format=True),
                q_target(q.spread(diverted, per_site=True), table_format=True),
                q_target(q.rsd(nir, per_site=True), table_format=True),
            ],
            description="Tablets made, mass diverted and NIR RSD per site.",
            transformations=[{"id": "merge", "options": {}}],
        )
    )
    return dashboard(
        "pcmm-sites",
        "Sites",
        "The same product at several sites, side by side.",
        panels,
        [site_variable(multi=True)],
        event_annotations(),
    )


def _count_thresholds() -> JSON:
    return {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
    }


#: file stem -> builder; the overview is Grafana's home dashboard (docker-compose.yml).
DASHBOARDS: dict[str, Callable[[Picker], JSON]] = {
    "plant-overview": overview,
    "module-detail": module_detail,
    "control-quality": control_quality,
    "alarms-audit": audit_trail,
    "alarm-management": alarm_management,
    "pipeline-health": pipeline_health,
    "sites": sites,
}


def build_all(tags: TagRegistry | None = None) -> dict[str, JSON]:
    """Every dashboard, by file stem."""
    pick = Picker(tags if tags is not None else registry())
    return {stem: build(pick) for stem, build in DASHBOARDS.items()}
