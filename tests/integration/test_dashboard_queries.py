"""Every panel, variable and annotation query of the committed dashboards runs on a real engine.

No Grafana runs here (none is packaged for this machine), so the dashboards are checked the
way Grafana would use them: two twins (site1 and site2) run 10 minutes of plant time with a
fault, a setpoint change and an alarm; their telemetry, ground truth and events go through the
historian's own conversion (`bridge.historian.points.convert`, from the MQTT payloads the
edge publishes) and the historian's self-metrics report into InfluxDB 1.6.7 (tests/support);
then each query of dashboards/json/*.json is run with Grafana's macros expanded ($timeFilter,
$__interval) and the variables set ($site, $module, $kind), and must return the series it
names. InfluxDB 2.x runs the same InfluxQL through its DBRP mapping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.counters import Counters
from bridge.deadletter import DeadLetterStore
from bridge.historian.points import convert, metrics_line
from bridge.historian.service import self_metrics
from bridge.historian.settings import HistorianSettings
from bridge.spool import Spool
from core import topics
from core.audit_chain import AuditChain
from core.commands import SetpointCommand
from core.faults import FaultSpec
from core.payload import Event, Sample, TelemetryBatch, encode_batch, encode_event
from core.tags import Quality
from dashboards import build, generate
from dashboards.queries import EVENTS, PIPELINE, TELEMETRY, TRUTH
from testkit.servers import InfluxDB
from twin import Plant

pytestmark = pytest.mark.integration

PLANT_S = 600
STEP_S = 1.0
INTERVAL = "10s"
SITES = {"site1": 1, "site2": 2}


@dataclass
class Run:
    """What was written: the time window and the modules, for the macros."""

    start_ns: int
    end_ns: int
    modules: list[str]
    lines: int = 0
    queries: int = 0


def _edge_batches(
    plant: Plant, start_ns: int, last: dict[str, float], seq: list[int]
) -> Iterator[tuple[str, bytes]]:
    """The changed samples of the twin now, as the edge publishes them: (topic, payload)."""
    site = topics.SiteTopics(plant.site_id)
    truth_ids = {tag.id for tag in plant.registry.truth_tags()}
    by_topic: dict[tuple[str, bool], list[Sample]] = {}
    sent_ns = start_ns + round(plant.now * 1e9)
    for tag_id, value in plant.snapshot(include_truth=True).items():
        if value.source_time <= last.get(tag_id, -1.0):
            continue
        last[tag_id] = value.source_time
        seq[0] += 1
        source_ns = start_ns + round(value.source_time * 1e9)
        quality = value.quality.value if isinstance(value.quality, Quality) else str(value.quality)
        sample = Sample(tag_id, value.value, quality, source_ns, sent_ns, seq[0])
        module = tag_id.partition(".")[0]
        by_topic.setdefault((module, tag_id in truth_ids), []).append(sample)
    for (module, truth), samples in by_topic.items():
        batch = TelemetryBatch(plant.site_id, module, sent_ns, tuple(samples))
        topic = site.truth(module) if truth else site.telemetry(module)
        yield topic, encode_batch(batch)


def _events(plant: Plant, start_ns: int) -> Iterator[tuple[str, bytes]]:
    """The twin's audit trail as the edge publishes it, plus a fault and an alarm event."""
    site = topics.SiteTopics(plant.site_id)
    chain = AuditChain("dashboards")  # chained again: the times here are not the twin's stamps
    for record in plant.audit:
        event = Event(
            plant.site_id,
            "audit",
            record.seq,
            start_ns + round(record.time * 1e9),
            "twin",
            user=record.user,
            action=record.action,
            target=record.target,
            old=record.old if isinstance(record.old, int | float | str | bool) else None,
            new=record.new if isinstance(record.new, int | float | str | bool) else None,
            reason=record.reason,
            accepted=record.accepted,
            result=record.result,
        )
        yield site.audit("twin"), encode_event(chain.seal(event))
    fault = Event(
        plant.site_id,
        "fault",
        1,
        start_ns + 120 * 10**9,
        "twin",
        action="fault_active",
        target="bridging@api_feeder",
        new=0.8,
        result="bridging active",
    )
    alarm = Event(
        plant.site_id,
        "alarm",
        1,
        start_ns + 150 * 10**9,
        "controller",
        user="controller",
        action="raise",
        target="api_low",
        reason="NIR below the lower limit",
        result="raised",
    )
    yield site.event("fault"), encode_event(fault)
    yield site.event("alarm"), encode_event(alarm)
    for event in _alarm_transitions(plant.site_id, start_ns):
        yield site.event("alarm"), encode_event(event)


def _alarm_transitions(site: str, start_ns: int) -> Iterator[Event]:
    """Alarm transitions as the edge forwards the server's condition events: a flood and a
    chattering alarm (so many that any 10-minute or 1-minute bucket boundary leaves more than
    10, and 3, on one side), an acknowledgement, standing alarms."""
    seq = 0

    def transition(t: float, alarm: str, action: str, state: str, **kw: Any) -> Event:
        nonlocal seq
        seq += 1
        return Event(
            site,
            "alarm",
            seq,
            start_ns + round(t * 1e9),
            "twin",
            user=kw.pop("user", "system"),
            action=action,
            target=alarm,
            result=f"{alarm} {action}",
            priority=kw.pop("priority", 500),
            level=kw.pop("level", "Active"),
            state=state,
            **kw,
        )

    for i in range(21):
        yield transition(200 + i * 5, f"equipment.fault_{i}", "raise", "active_unacked")
    for t in range(300, 360, 10):
        yield transition(t, "nir.api_pct", "raise", "active_unacked", priority=700, level="High")
        yield transition(t + 5, "nir.api_pct", "clear", "rtn_unacked", priority=700, level="")
    yield transition(
        400, "equipment.fault_0", "acknowledge", "active_acked", user="alice", elapsed_s=200.0
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxDB, Run]]:
    from testkit.servers import make_influxdb  # noqa: PLC0415

    server = make_influxdb()
    server.start()
    try:
        import time  # noqa: PLC0415

        start_ns = (time.time_ns() // 10**9 - 2 * PLANT_S) * 10**9
        lines: list[bytes] = []
        modules: list[str] = []
        for site_id, seed in SITES.items():
            plant = Plant(seed=seed, site_id=site_id, variation=0.05 * (seed - 1), warm_start=True)
            modules = plant.registry.modules
            if site_id == "site1":
                plant.inject(FaultSpec("bridging", magnitude=0.8, duration_s=60, onset_s=120))
                plant.inject(FaultSpec("nir_bias", magnitude=0.8, duration_s=0, onset_s=300))
            last: dict[str, float] = {}
            seq = [0]
            while plant.now < PLANT_S:
                plant.advance(plant.now + STEP_S)
                if site_id == "site1" and plant.now == 200:
                    plant.apply(SetpointCommand("press.fill_depth_sp", 10.4, "alice", "weight low"))
                    plant.apply(SetpointCommand("press.fill_depth_sp", 99, "bob", "typo"))
                for topic, payload in _edge_batches(plant, start_ns, last, seq):
                    lines += convert(topic, payload)
            for topic, payload in _events(plant, start_ns):
                lines += convert(topic, payload)
        # The historian's own self-metrics, as its ticker writes them every period.
        settings = HistorianSettings(spool_path=tmp_path_factory.mktemp("spool") / "s.sqlite")
        counters = Counters()
        spool = Spool(settings.spool_path, max_items=10, max_bytes=10**6)
        deadletters = DeadLetterStore(settings.spool_path.with_name("deadletters.sqlite"))
        try:
            for i in range(PLANT_S // 10):
                for name in ("received", "written", "points"):
                    counters.add(name, 100)
                report = self_metrics(settings, counters, spool, deadletters)
                report = type(report)(
                    report.service,
                    report.site,
                    report.instance,
                    start_ns + i * 10 * 10**9,
                    report.values,
                )
                lines.append(metrics_line(report))
        finally:
            spool.close()
            deadletters.close()
        for i in range(0, len(lines), 5000):
            server.write(b"\n".join(lines[i : i + 5000]).decode())
        run = Run(start_ns, start_ns + PLANT_S * 10**9, modules, lines=len(lines))
        yield server, run
    finally:
        server.kill()


def expand(query: str, run: Run, *, site: str = "site1", module: str = "press") -> str:
    """Grafana's macros and this test's variable values, as Grafana substitutes them."""
    start_ms, end_ms = run.start_ns // 10**6, run.end_ns // 10**6
    return (
        query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
        .replace("$__interval", INTERVAL)
        .replace("$site", site)
        .replace("$module", module)
        .replace("$kind", "(audit|alarm|state|fault)")
    )


def _aliases(query: str) -> list[str]:
    return re.findall(r' AS "([^"]+)"', query)


def _models() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(generate.OUT.glob("*.json"))
    }


def _panels(stem: str) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = _models()[stem]["panels"]
    return panels


def _check_target(server: InfluxDB, run: Run, stem: str, panel: dict[str, Any], query: str) -> None:
    multi = stem == "sites"
    rows = server.query(expand(query, run, site="(site1|site2)" if multi else "site1"))
    run.queries += 1
    where = f"{stem} / {panel['title']}: {query}"
    assert rows, f"no rows: {where}"
    for alias in _aliases(query):
        assert any(row.get(alias) is not None for row in rows), f"{alias} empty: {where}"
    if re.search(r'GROUP BY [^/]*"site"', query):
        assert {row["site"] for row in rows} == set(SITES), where
    if f'FROM "{PIPELINE}"' in query:
        assert {row["service"] for row in rows} == {"historian"}, where


@pytest.mark.parametrize(
    "stem",
    [
        "plant-overview",
        "control-quality",
        "alarms-audit",
        "alarm-management",
        "pipeline-health",
        "sites",
    ],
)
def test_every_panel_query_returns_its_series(loaded: tuple[InfluxDB, Run], stem: str) -> None:
    server, run = loaded
    for panel in _panels(stem):
        for target in panel["targets"]:
            _check_target(server, run, stem, panel, target["query"])


def test_module_detail_shows_every_module_in_some_panel(loaded: tuple[InfluxDB, Run]) -> None:
    server, run = loaded
    panels = _panels("module-detail")
    for module in run.modules:
        columns: set[str] = set()
        for panel in panels:
            for target in panel["targets"]:
                for row in server.query(expand(target["query"], run, module=module)):
                    columns |= {k for k, v in row.items() if v is not None and k != "time"}
        tags = [t for t in build.registry().of_module(module) if not t.ground_truth]
        numeric = [t for t in tags if not t.states and t.data_type.value != "bool"]
        for tag in numeric:
            assert f"mean_{tag.name}" in columns, f"$module={module}: {tag.name} not shown"
    # Every unit panel shows something for at least one module.
    for panel in panels:
        query = panel["targets"][0]["query"]
        assert any(server.query(expand(query, run, module=m)) for m in run.modules), panel["title"]


def test_audit_trail_table_has_who_what_old_new_why_result(loaded: tuple[InfluxDB, Run]) -> None:
    server, run = loaded
    table = next(p for p in _panels("alarms-audit") if p["type"] == "table")
    rows = server.query(expand(table["targets"][0]["query"], run))
    writes = [r for r in rows if r["action"] == "write" and r["target"] == "press.fill_depth_sp"]
    alice = next(r for r in writes if r["user"] == "alice")
    assert (alice["new"], alice["reason"], alice["accepted"]) == ("10.4", "weight low", True)
    assert alice["old"] is not None
    bob = next(r for r in writes if r["user"] == "bob")
    assert bob["accepted"] is False and "outside" in bob["result"]
    assert rows == sorted(rows, key=lambda r: -r["time"])  # newest first


def test_annotations_mark_faults_setpoints_and_alarms(loaded: tuple[InfluxDB, Run]) -> None:
    server, run = loaded
    for stem, model in _models().items():
        for annotation in model["annotations"]["list"]:
            if annotation.get("builtIn"):
                continue
            target = annotation["target"]
            assert target["fromAnnotations"] is True, f"{stem}: {annotation['name']}"
            rows = server.query(expand(target["query"], run))
            assert rows, f"{stem}: annotation {annotation['name']} finds nothing"
            for column in ("titleColumn", "textColumn", "tagsColumn"):
                assert target[column] in rows[0], f"{stem}: {annotation['name']} {column}"
    faults = next(
        a for a in _models()["plant-overview"]["annotations"]["list"] if a["name"] == "Faults"
    )
    actions = {r["action"] for r in server.query(expand(faults["target"]["query"], run))}
    assert {"inject_fault", "fault_active"} <= actions


def test_template_variables_list_the_sites_and_modules(loaded: tuple[InfluxDB, Run]) -> None:
    server, run = loaded
    for stem, model in _models().items():
        for variable in model["templating"]["list"]:
            if variable["type"] != "query":
                continue
            values = {row["value"] for row in server.query(expand(variable["query"], run))}
            expected = set(SITES) if variable["name"] == "site" else set(run.modules)
            assert values == expected, f"{stem}: ${variable['name']}"


def test_the_schema_names_match_the_historian(loaded: tuple[InfluxDB, Run]) -> None:
    server, _ = loaded
    measurements = {row["name"] for row in server.query("SHOW MEASUREMENTS")}
    assert measurements == {TELEMETRY, TRUTH, EVENTS, PIPELINE}
    reported = set(
        self_metrics(HistorianSettings(), Counters(), _NoSpool(), _NoDeadLetters()).values  # type: ignore[arg-type]
    )
    shown = {m for m, *_ in build.PIPELINE_GAUGES} | {m for m, _ in build.PIPELINE_RATES}
    assert shown <= reported, f"the pipeline dashboard shows unknown metrics {shown - reported}"


class _NoSpool:
    dropped = depth = size_bytes = moved_aside = 0


class _NoDeadLetters:
    waiting = dropped = moved_aside = 0


def test_writes_and_queries_were_many(loaded: tuple[InfluxDB, Run]) -> None:
    _, run = loaded
    assert run.lines > 10_000
