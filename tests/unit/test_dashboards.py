"""The committed dashboards are what the registry generates, and every query is well-formed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from core.tags import TEMPLATES
from dashboards import generate
from dashboards.build import build_all, registry
from dashboards.panels import DATASOURCE_UID
from dashboards.queries import EVENTS, PIPELINE, TELEMETRY, TRUTH

FIELD = re.compile(r'\b(?:mean|last|spread|stddev|count|max)\("([a-z_]+)"\)')


def test_committed_json_is_what_the_registry_generates() -> None:
    files = generate.rendered()
    committed = sorted(p.name for p in generate.OUT.glob("*.json"))
    assert committed == sorted(files), "run: python -m dashboards.generate"
    for name, text in files.items():
        assert (generate.OUT / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run python -m dashboards.generate"
        )


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "sites.json").write_text("{}", encoding="utf-8")
    assert generate.main(["--out", str(tmp_path), "--check"]) == 1


@pytest.fixture(scope="module")
def models() -> dict[str, dict[str, object]]:
    return build_all()


def _targets(model: dict[str, object]) -> list[tuple[str, str]]:
    panels = model["panels"]
    assert isinstance(panels, list)
    return [(p["title"], t["query"]) for p in panels for t in p["targets"]]


def test_every_query_filters_by_site_and_time(models: dict[str, dict[str, object]]) -> None:
    for stem, model in models.items():
        for title, query in _targets(model):
            assert "/^$site$/" in query, f"{stem}/{title}: no $site"
            assert "$timeFilter" in query, f"{stem}/{title}: no $timeFilter"
            measurement = re.search(r'FROM "([a-z]+)"', query)
            assert measurement and measurement.group(1) in (TELEMETRY, TRUTH, EVENTS, PIPELINE)


def test_every_field_a_query_reads_is_a_registry_tag(
    models: dict[str, dict[str, object]],
) -> None:
    names = {spec.name for specs in TEMPLATES.values() for spec in specs}
    tags = registry()
    for stem, model in models.items():
        for title, query in _targets(model):
            if 'FROM "telemetry"' not in query and 'FROM "truth"' not in query:
                continue
            for field in FIELD.findall(query):
                assert field in names, f"{stem}/{title}: {field} is not a tag name"
            for alias in re.findall(r'AS "([a-z_]+\.[a-z_]+)"', query):
                assert alias in tags, f"{stem}/{title}: {alias} is not a tag id"


def test_ground_truth_only_in_panels_labelled_simulation_only(
    models: dict[str, dict[str, object]],
) -> None:
    panels = models["control-quality"]["panels"]
    assert isinstance(panels, list)
    for panel in panels:
        if any('FROM "truth"' in t["query"] for t in panel["targets"]):
            assert panel["title"].startswith("SIMULATION ONLY"), panel["title"]
    for stem, model in models.items():
        if stem != "control-quality":
            assert not any('FROM "truth"' in q for _, q in _targets(model)), stem


def test_spec_limits_and_units_come_from_the_registry(
    models: dict[str, dict[str, object]],
) -> None:
    weight = registry()["press.tablet_weight"]
    assert weight.limits is not None
    text = json.dumps(models["plant-overview"])
    override = next(
        o
        for p in models["plant-overview"]["panels"]  # type: ignore[attr-defined]
        for o in p["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == weight.id
    )
    props = {prop["id"]: prop["value"] for prop in override["properties"]}
    assert props["unit"] == "massmg"
    assert [s["value"] for s in props["thresholds"]["steps"]] == [None, *weight.limits]
    assert DATASOURCE_UID in text


def test_dashboards_have_unique_uids_site_variable_and_event_annotations(
    models: dict[str, dict[str, object]],
) -> None:
    uids = [m["uid"] for m in models.values()]
    assert len(set(uids)) == len(uids) == 7
    for model in models.values():
        variables = [v["name"] for v in model["templating"]["list"]]  # type: ignore[index]
        assert "site" in variables
        names = [a["name"] for a in model["annotations"]["list"]]  # type: ignore[index]
        assert {"Faults", "Setpoint changes"} <= set(names)


def test_datasource_provisioning_states_influxql() -> None:
    """The datasource the dashboards use is InfluxQL by configuration, not by default."""
    path = generate.OUT.parent / "provisioning" / "datasources" / "influxdb.yml"
    (source,) = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    assert (source["type"], source["uid"]) == ("influxdb", DATASOURCE_UID)
    assert source["jsonData"]["version"] == "InfluxQL"
