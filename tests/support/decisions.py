"""Campaigns run in process, and a digest of everything the controller decided and said.

Run as a script it imports only the installed package (apps, twin, controller), so it runs as
well in the image, whose hot modules are compiled (setup.py), as in the checkout's venv, where
they are pure Python:

    python decisions.py scenarios/standard_campaign.yaml 3 4c   # random 3, random 4 compound

It prints one JSON object: whether `controller.blend` and `twin.feeder` are compiled, and per
campaign (a scenario file by its stem, a random one by its seed) the digest of every action
(plant time, kind, target, value, reason, accepted) and every alarm (time, name, raised,
message), their counts, and the diverted and true OOS mass.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from apps.campaign import run_campaign
from apps.compiled import compiled
from apps.random_campaign import random_campaign
from apps.scenario import Scenario, load_scenario


def scenario_of(name: str) -> Scenario:
    """A scenario file, or a random campaign's seed (`c` after it for a compound one)."""
    if name.endswith(".yaml"):
        return load_scenario(Path(name))
    return random_campaign(int(name.rstrip("c")), compound=name.endswith("c")).scenario


def key(name: str) -> str:
    return Path(name).stem if name.endswith(".yaml") else name


def digest(name: str) -> dict[str, Any]:
    run = run_campaign(scenario_of(name), controlled=True)
    h = hashlib.sha256()
    for time, action, result in run.log.actions:
        h.update(repr((time, action.kind, action.target, action.value, action.reason)).encode())
        h.update(repr(result.accepted).encode())
    for alarm in run.log.alarms:
        h.update(repr((alarm.time, alarm.name, alarm.raised, alarm.message)).encode())
    ledger = run.plant.ledger
    return {
        "sha256": h.hexdigest(),
        "actions": len(run.log.actions),
        "alarms": len(run.log.alarms),
        "diverted_kg": ledger.mass_diverted,
        "true_oos_kg": ledger.oos_mass,
    }


if __name__ == "__main__":
    print(json.dumps({"compiled": compiled(), "runs": {key(n): digest(n) for n in sys.argv[1:]}}))
