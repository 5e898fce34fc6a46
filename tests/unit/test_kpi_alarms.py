"""`plant kpi`'s alarm measures: a campaign's alarm load, with and without the controller."""

from __future__ import annotations

from apps.alarm_kpi import alarm_json, campaign_alarms
from apps.campaign import run_campaign
from apps.scenario import parse_scenario

SCENARIO = parse_scenario(
    {
        "name": "bridging only",
        "seed": 3,
        "hours": 0.5,
        "events": [
            {"at": "5m", "fault": "bridging", "magnitude": 0.8, "duration": "5m", "reason": "t"}
        ],
    }
)


def test_a_campaign_measures_its_alarms_and_only_the_controlled_run_has_diagnoses() -> None:
    data = {}
    for controlled in (True, False):
        run = run_campaign(SCENARIO, controlled=controlled)
        actions = {(t.alarm, t.action) for t in run.alarm_transitions}
        assert ("equipment.bridging", "raise") in actions
        assert ("equipment.bridging", "clear") in actions
        data[controlled] = alarm_json(campaign_alarms(run.alarm_transitions, SCENARIO.hours))
    assert any(a.startswith("controller.") for a, _ in data[True]["top10"])
    assert not any(a.startswith("controller.") for a, _ in data[False]["top10"])
    for measured in data.values():
        assert measured["annunciated"] >= 1 and measured["acknowledged"] == 0
        assert measured["per_10min_max"] >= 1
