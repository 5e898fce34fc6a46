"""`python -m bench.hostile`'s campaign (issue 12), run in full: every hostile kind against the
running twin, edge, Mosquitto, historian, InfluxDB and controller; its JSON goals hold."""

from __future__ import annotations

import pytest

from bench.hostile import kinds, run

pytestmark = pytest.mark.integration


def test_the_hostile_campaign_meets_its_goals() -> None:
    result = run(10.0)
    assert result["kinds"] == len(kinds())
    assert result["services_alive"] is True, result
    assert result["good_lost"] == 0 and result["samples_counted"] > 0, result
    assert result["missing_letters"] == [] and result["dead_lettered"] >= 17, result
    assert result["audit_intact"] is True, result
