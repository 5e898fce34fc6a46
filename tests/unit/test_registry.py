from __future__ import annotations

import math

from core.layout import load_layout, parse_layout
from core.tags import Access, DataType, TagRegistry, build_registry


def registry() -> TagRegistry:
    return build_registry(load_layout().modules)


def test_every_tag_is_fully_described() -> None:
    reg = registry()
    assert len(reg) > 60
    for tag in reg.values():
        assert tag.description, tag.id
        assert tag.unit.unece, tag.id
        assert tag.low <= tag.high, tag.id
        if tag.data_type is DataType.ENUM:
            assert tag.states and tag.high == len(tag.states) - 1, tag.id


def test_ids_are_module_dot_name_and_ranges_come_from_parameters() -> None:
    reg = registry()
    flow = reg["api_feeder.mass_flow_sp"]
    assert (flow.module, flow.name, flow.access) == ("api_feeder", "mass_flow_sp", Access.SETPOINT)
    assert (flow.low, flow.high) == (0.0, 5.0)  # max_flow_kgh of the API feeder in the layout
    assert reg["excipient_feeder.mass_flow_sp"].high == 40.0
    assert reg["press.fill_depth_sp"].low == 7.0 and reg["press.fill_depth_sp"].high == 13.0


def test_ground_truth_is_flagged_and_kept_apart() -> None:
    reg = registry()
    truth = {t.id for t in reg.truth_tags()}
    assert "press.true_api_content" in truth and "diverter.true_oos_mass" in truth
    assert not truth & {t.id for t in reg.plant_tags()}
    assert all(not t.writable for t in reg.truth_tags())


def test_check_coerces_and_explains() -> None:
    reg = registry()
    depth = reg["press.fill_depth_sp"]
    assert depth.check(10) == (10.0, None)
    value, why = depth.check(14.0)
    assert value is None and why is not None and "outside the range 7..13 mm" in why
    assert depth.check(math.nan)[1] is not None
    assert depth.check("ten")[1] is not None
    assert depth.check(True)[1] is not None
    mode = reg["api_feeder.mode_sp"]
    assert mode.check("volumetric") == (1, None)
    assert mode.check(1) == (1, None)
    assert "not one of" in (mode.check("manual")[1] or "")
    assert mode.check(2)[1] is not None


def test_a_second_api_feeder_is_a_layout_change() -> None:
    layout = load_layout()
    data: dict[str, list[dict[str, object]]] = {
        "module": [
            {"id": m.id, "type": m.type, "feeds": list(m.feeds), "observes": m.observes}
            for m in layout.modules
        ]
    }
    for entry in data["module"]:
        if entry["observes"] is None:
            del entry["observes"]
    data["module"].insert(
        1,
        {"id": "api_feeder_2", "type": "feeder", "feeds": "blender", "params": {"material": "api"}},
    )
    reg = build_registry(parse_layout(data).modules)
    assert "api_feeder_2.mass_flow_sp" in reg
    assert len(reg.of_module("api_feeder_2")) == len(reg.of_module("api_feeder"))
