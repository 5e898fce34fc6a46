from __future__ import annotations

from pathlib import Path

import pytest

from core.commands import LineCommand
from core.layout import LayoutError, load_layout, vary_for_site
from twin import Plant

TWO_PRESSES = """
name = "two_presses"
[[module]]
id = "api_feeder"
type = "feeder"
feeds = "blender"
params = { material = "api", flow_sp_kgh = 2.0 }
[[module]]
id = "api_feeder_b"
type = "feeder"
feeds = "blender"
params = { material = "api", flow_sp_kgh = 2.0 }
[[module]]
id = "excipient_feeder"
type = "feeder"
feeds = "blender"
[module.params]
material = "excipient"
flow_sp_kgh = 35.6
max_flow_kgh = 60.0
feed_factor_kgh_pct = 0.8
hopper_capacity_kg = 60.0
hopper_start_kg = 50.0
refill_level_kg = 15.0
refill_target_kg = 50.0
bulk_density_g_cm3 = 0.55
[[module]]
id = "blender"
type = "blender"
feeds = ["feed_frame_a", "feed_frame_b"]
params = { flow_ref_kgh = 40.0, holdup_ref_kg = 0.6667 }
[[module]]
id = "nir"
type = "nir"
observes = "blender"
[[module]]
id = "feed_frame_a"
type = "feed_frame"
feeds = "press_a"
[[module]]
id = "feed_frame_b"
type = "feed_frame"
feeds = "press_b"
[[module]]
id = "press_a"
type = "press"
feeds = "diverter"
[[module]]
id = "press_b"
type = "press"
feeds = "diverter"
[[module]]
id = "diverter"
type = "diverter"
"""


def test_default_layout_is_the_pcmm_line() -> None:
    layout = load_layout()
    assert [m.type for m in layout.modules] == [
        "feeder",
        "feeder",
        "feeder",
        "blender",
        "nir",
        "feed_frame",
        "press",
        "diverter",
        "environment",
        "line",
    ]
    assert layout.module("api_feeder").params.flow_sp_kgh == 2.0


def test_second_api_feeder_and_second_press_are_a_layout_change(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(TWO_PRESSES)
    plant = Plant(path, seed=3)
    assert {"press_b.tablet_weight", "api_feeder_b.mass_flow_pv"} <= set(plant.registry)
    plant.apply(LineCommand("start"))
    plant.advance(1800)
    assert plant.state == "producing"
    # Both API feeders feed one API component: two presses share the blend evenly.
    assert plant.read("press_a.production_rate") > 40_000
    assert plant.read("press_b.production_rate") > 40_000
    assert 95 < plant.read("press_b.true_api_content") < 105
    fed = plant.ledger.total_fed_kg
    out = plant.ledger.mass_accepted + plant.ledger.mass_diverted + plant.holdup_kg()
    assert abs(fed - out) < 1e-9 * fed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[module]]\nid='x'\ntype='mixer'\n", "unknown type 'mixer'"),
        ("[[module]]\nid='f'\ntype='feeder'\nfeeds='nowhere'\n", "feeds 'nowhere'"),
        (
            "[[module]]\nid='f'\ntype='feeder'\nfeeds='b'\nparams={speed=3}\n[[module]]\nid='b'\n"
            "type='blender'\n",
            "has no parameter 'speed'",
        ),
        (
            "[[module]]\nid='f'\ntype='feeder'\nfeeds='b'\nparams={flow_sp_kgh='fast'}\n",
            "must be float",
        ),
        ("name='x'\n", "no [[module]] tables"),
        ("[[module]]\nid='bad id'\ntype='feeder'\n", "must be a name"),
        ("[[module\n", "layout"),
    ],
)
def test_bad_layouts_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(LayoutError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_layout(path)


def test_missing_layout_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="does not exist"):
        load_layout(tmp_path / "nope.toml")
    with pytest.raises(LayoutError, match="no layout named"):
        load_layout("nope")


def test_sites_get_their_own_equipment() -> None:
    base = load_layout()
    one = vary_for_site(base, "site1", 0.05)
    again = vary_for_site(base, "site1", 0.05)
    two = vary_for_site(base, "site2", 0.05)
    ff = [
        m.params.feed_factor_kgh_pct for m in (one.module("api_feeder"), two.module("api_feeder"))
    ]
    assert one == again
    assert ff[0] != ff[1]
    assert all(abs(f / 0.05 - 1) <= 0.05 for f in ff)
    assert vary_for_site(base, "site1", 0.0) is base
    with pytest.raises(LayoutError):
        vary_for_site(base, "site1", 0.7)
